//! The `delayd` server binary.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;

use delayd::config::{Config, LoadError};
use delayd::engine::Engine;
use delayd::server;
use delayd::shared::Shared;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The tracing filter for a redis-server log level (RUST_LOG, when set,
/// takes precedence at start).
fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    let filter = delayd::config::log_filter(level).unwrap_or("info");
    tracing_subscriber::EnvFilter::new(format!(
        // openraft logs every unreachable peer at error level, several times
        // a second while a node is down: delayd logs role changes itself.
        "{filter},fjall=warn,lsm_tree=warn,fjall::journal::batch_reader=trace,openraft=off"
    ))
}

fn init_logging(level: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| log_filter(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_filter_reloading();
    let handle = builder.reload_handle();
    builder.init();
    // CONFIG SET loglevel swaps the filter.
    delayd::config::install_log_level_setter(
        level,
        Box::new(move |level| {
            handle
                .reload(log_filter(level))
                .map_err(|e| format!("cannot change the log level: {e}"))
        }),
    );
}

fn main() -> ExitCode {
    let mut config = match Config::load(std::env::args_os()) {
        Ok(c) => c,
        Err(LoadError::Cli(e)) => e.exit(),
        Err(LoadError::File(why)) => {
            eprintln!("delayd: {why}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config.loglevel);
    if let Some(file) = &config.config_file {
        tracing::info!("configuration read from {}", file.display());
    }
    // Before the store opens its files: it needs its share of descriptors.
    if let Err(why) = config.fit_open_files() {
        tracing::error!("{why}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.io_threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> delayd::Result<()> {
    tracing::info!(
        "delayd {} starting: data in {}, appendfsync {}",
        env!("CARGO_PKG_VERSION"),
        config.dir.display(),
        config.appendfsync.name()
    );
    // A bad certificate or key is a start-up error, before the store opens.
    let tls = delayd::tls::configure(&config).map_err(|why| {
        tracing::error!("{why}");
        delayd::Error::msg("Failed to configure TLS. Check logs for more info.")
    })?;
    let options = delayd::engine::Options {
        dir: config.dir.clone(),
        horizon_ms: config.horizon_ms,
        hot_max_members: config.hot_max_members,
        appendfsync: config.appendfsync,
        trace_queues: config.trace_queues.clone(),
        trace_max_events: config.trace_max_events,
    };
    let (engine, cluster) = match &config.cluster_nodes {
        None => (Engine::start(&options)?, None),
        Some(nodes) => {
            let nodes = delayd::cluster::parse_nodes(nodes).map_err(delayd::Error::msg)?;
            let id = match (config.cluster_id, nodes.len()) {
                (Some(id), _) => id,
                (None, 1) => nodes[0].id,
                (None, _) => return Err(delayd::Error::msg("cluster-nodes needs cluster-id")),
            };
            let join = match &config.cluster_join {
                Some(j) => Some(delayd::cluster::parse_join(j).map_err(delayd::Error::msg)?),
                None => None,
            };
            let (engine, cluster) = delayd::cluster::Cluster::start(
                id,
                nodes,
                join,
                &options,
                config.cluster_snapshot_logs,
            )
            .await?;
            (engine, Some(cluster))
        }
    };
    // fjall logs through `log`; its recovery messages (a torn journal tail)
    // are wanted at start-up, but its per-write trace calls must not go
    // through the tracing dispatcher afterwards.
    log::set_max_level(log::LevelFilter::Warn);
    let listeners = server::bind(&config).await?;
    for l in &listeners {
        if let Ok(a) = l.tcp.local_addr() {
            let kind = if l.tls { " (TLS)" } else { "" };
            tracing::info!("ready to accept connections on {a}{kind}");
        }
    }
    let http = delayd::http::bind(&config).await?;
    for l in &http {
        if let Ok(a) = l.local_addr() {
            tracing::info!(
                "serving the console on http://{a}/, the API on /api/, metrics on /metrics"
            );
        }
    }
    let shared = Shared::new(config, engine, cluster);
    shared.tls.install(tls);
    if let Err(errors) = shared.load_aclfile() {
        return Err(delayd::Error::msg(format!(
            "Aborting Redis startup because of ACL errors: {errors}"
        )));
    }
    let http = tokio::spawn(delayd::http::run(http, shared.clone()));
    let signals = shared.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::warn!("received a termination signal, shutting down");
        signals.shutdown.trigger();
    });
    let failure = match &shared.cluster {
        Some(cluster) => {
            let (cluster, stop) = (cluster.clone(), shared.clone());
            Some(tokio::spawn(async move {
                let why = cluster.failed().await;
                tracing::error!("{why}: shutting down");
                stop.shutdown.trigger();
                why
            }))
        }
        None => None,
    };
    let stop = shared.clone();
    let served = server::run(listeners, shared).await;
    // The HTTP listeners close on the same shutdown signal (set here too
    // in case the server stopped on an error of its own).
    stop.shutdown.trigger();
    let _ = http.await;
    served?;
    if let Some(failure) = failure
        && failure.is_finished()
        && let Ok(why) = failure.await
    {
        return Err(delayd::Error::msg(why));
    }
    tracing::info!("delayd is now ready to exit, bye bye");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}
