//! The `delayd` server binary.

use std::process::ExitCode;

use clap::Parser;
use delayd::config::Config;
use delayd::engine::Engine;
use delayd::server::{self, Shared};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(level: &str) {
    // redis-server's level names, mapped onto tracing's.
    let filter = match level {
        "debug" => "debug",
        "verbose" => "info",
        "warning" => "warn",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{filter},fjall=warn,lsm_tree=warn,fjall::journal::batch_reader=trace"
        ))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let config = Config::parse();
    init_logging(&config.loglevel);
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
    let engine = Engine::start(&config)?;
    let listeners = server::bind(&config).await?;
    for l in &listeners {
        if let Ok(a) = l.local_addr() {
            tracing::info!("ready to accept connections on {a}");
        }
    }
    let shared = Shared::new(config, engine);
    let signals = shared.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::warn!("received a termination signal, shutting down");
        signals.shutdown.trigger();
    });
    server::run(listeners, shared).await?;
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
