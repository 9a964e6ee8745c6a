//! ACL users, as Redis 7.0 has them (src/acl.c): who may run which
//! commands on which keys.
//!
//! Every client runs as a user; new clients as `default`, which
//! `requirepass` gives its password (`nopass` without one: no AUTH needed,
//! as before users existed). A user is enabled or not, has SHA-256 hashes
//! of its passwords (never the passwords), a bitmap of the commands it may
//! run (one bit per command and per subcommand of CLIENT, CONFIG, COMMAND
//! and ACL, plus Redis's reserved bit meaning "+@all: future commands
//! too") and key patterns (`~glob`, `%R~glob`, `%W~glob`, or every key).
//! Selectors (`(...)`) are not supported; channel patterns are kept only
//! so that Redis ACL files load and are written back unchanged (delayd has
//! no Pub/Sub).
//!
//! Users live in [`Acl`], shared by every connection. A change replaces the
//! user's [`User`] (copy on write) and bumps a generation counter; each
//! session keeps an `Arc` of its user and looks it up again only when the
//! generation moved, so a check costs one atomic load, and nothing more
//! for a user allowed every command and key (the default user).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::cmd::table::{COMMANDS, CommandSpec, KEY_READ, KEY_WRITE};

/// Redis's categories, in its order (ACL CAT lists them so), then delayd's
/// own `delay` (the DELAY* commands).
pub(crate) const CATEGORIES: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
    "delay",
];

/// The subcommands of the container commands, with their categories as
/// Redis 7.0 gives them (COMMAND INFO client|kill ...): a permission is
/// checked against the subcommand, as in Redis.
const SUBCOMMANDS: &[(&str, &str, &[&str])] = &[
    ("client", "id", &["slow", "connection"]),
    ("client", "setname", &["slow", "connection"]),
    ("client", "getname", &["slow", "connection"]),
    ("client", "setinfo", &["slow", "connection"]),
    (
        "client",
        "list",
        &["admin", "slow", "dangerous", "connection"],
    ),
    ("client", "info", &["slow", "connection"]),
    (
        "client",
        "no-evict",
        &["admin", "slow", "dangerous", "connection"],
    ),
    (
        "client",
        "unblock",
        &["admin", "slow", "dangerous", "connection"],
    ),
    (
        "client",
        "kill",
        &["admin", "slow", "dangerous", "connection"],
    ),
    (
        "client",
        "pause",
        &["admin", "slow", "dangerous", "connection"],
    ),
    (
        "client",
        "unpause",
        &["admin", "slow", "dangerous", "connection"],
    ),
    ("client", "reply", &["slow", "connection"]),
    ("client", "tracking", &["slow", "connection"]),
    ("client", "help", &["slow", "connection"]),
    ("config", "get", &["admin", "slow", "dangerous"]),
    ("config", "set", &["admin", "slow", "dangerous"]),
    ("config", "resetstat", &["admin", "slow", "dangerous"]),
    ("config", "help", &["slow"]),
    ("command", "count", &["slow", "connection"]),
    ("command", "docs", &["slow", "connection"]),
    ("command", "info", &["slow", "connection"]),
    ("command", "getkeys", &["slow", "connection"]),
    ("command", "list", &["slow", "connection"]),
    ("command", "help", &["slow", "connection"]),
    ("acl", "cat", &["slow"]),
    ("acl", "deluser", &["admin", "slow", "dangerous"]),
    ("acl", "dryrun", &["admin", "slow", "dangerous"]),
    ("acl", "getuser", &["admin", "slow", "dangerous"]),
    ("acl", "genpass", &["slow"]),
    ("acl", "list", &["admin", "slow", "dangerous"]),
    ("acl", "load", &["admin", "slow", "dangerous"]),
    ("acl", "log", &["admin", "slow", "dangerous"]),
    ("acl", "save", &["admin", "slow", "dangerous"]),
    ("acl", "setuser", &["admin", "slow", "dangerous"]),
    ("acl", "users", &["admin", "slow", "dangerous"]),
    ("acl", "whoami", &["slow"]),
    ("acl", "help", &["slow"]),
];

/// Bits in a command bitmap; the last is reserved for "+@all" (Redis's
/// `USER_COMMAND_BITS_COUNT - 1`).
const BITS: usize = 256;
const FUTURE_BIT: usize = BITS - 1;

/// One entry of the ACL command universe: a table row or a subcommand.
#[derive(Debug)]
pub(crate) struct AclCmd {
    /// `delayadd`, `config|get`.
    pub(crate) fullname: String,
    cats: u32,
    /// The ids of its subcommands (a container).
    subs: Vec<usize>,
    /// A subcommand's container.
    parent: Option<usize>,
}

/// Every command and subcommand, with its id (its index).
struct Universe {
    cmds: Vec<AclCmd>,
    by_name: HashMap<String, usize>,
}

fn cat_mask(names: &[&str]) -> u32 {
    names
        .iter()
        .filter_map(|n| CATEGORIES.iter().position(|c| c == n))
        .fold(0, |m, i| m | (1 << i))
}

fn universe() -> &'static Universe {
    static U: OnceLock<Universe> = OnceLock::new();
    U.get_or_init(|| {
        let mut cmds: Vec<AclCmd> = COMMANDS
            .iter()
            .map(|c| AclCmd {
                fullname: c.name.to_string(),
                cats: cat_mask(c.acl),
                subs: Vec::new(),
                parent: None,
            })
            .collect();
        for (parent, sub, cats) in SUBCOMMANDS {
            let Some(p) = COMMANDS.iter().position(|c| c.name == *parent) else {
                continue;
            };
            let id = cmds.len();
            cmds.push(AclCmd {
                fullname: format!("{parent}|{sub}"),
                cats: cat_mask(cats),
                subs: Vec::new(),
                parent: Some(p),
            });
            cmds[p].subs.push(id);
        }
        debug_assert!(cmds.len() < FUTURE_BIT);
        let by_name = cmds
            .iter()
            .enumerate()
            .map(|(i, c)| (c.fullname.clone(), i))
            .collect();
        Universe { cmds, by_name }
    })
}

/// The id a call is checked against: its subcommand's for a container (the
/// container's own if the subcommand is unknown: the parser answers that).
fn call_id(spec: &'static CommandSpec, args: &[Bytes]) -> Option<usize> {
    let u = universe();
    let id = COMMANDS.iter().position(|c| std::ptr::eq(c, spec))?;
    let cmd = &u.cmds[id];
    if !cmd.subs.is_empty()
        && let Some(sub) = args.get(1)
    {
        let name = format!(
            "{}|{}",
            cmd.fullname,
            String::from_utf8_lossy(sub).to_ascii_lowercase()
        );
        if let Some(&s) = u.by_name.get(&name) {
            return Some(s);
        }
    }
    Some(id)
}

/// The name a denial reports: `delayadd`, `config|get`.
pub(crate) fn call_name(spec: &'static CommandSpec, args: &[Bytes]) -> String {
    call_id(spec, args)
        .map(|i| universe().cmds[i].fullname.clone())
        .unwrap_or_else(|| spec.name.to_string())
}

/// The commands in a category (ACL CAT category), or None if it does not exist.
pub(crate) fn commands_in(category: &str) -> Option<Vec<&'static str>> {
    let i = CATEGORIES
        .iter()
        .position(|c| c.eq_ignore_ascii_case(category))?;
    Some(
        universe()
            .cmds
            .iter()
            .filter(|c| c.cats & (1 << i) != 0)
            .map(|c| c.fullname.as_str())
            .collect(),
    )
}

/// A key pattern and the access it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyPattern {
    flags: u8,
    pattern: Bytes,
}

impl KeyPattern {
    fn describe(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self.flags {
            f if f == KEY_READ => b"%R~",
            f if f == KEY_WRITE => b"%W~",
            _ => b"~",
        });
        out.extend_from_slice(&self.pattern);
    }
}

/// A user's command bitmap, key and channel patterns (Redis's root selector).
#[derive(Debug, Clone, Default)]
struct Selector {
    bits: [u64; BITS / 64],
    allcommands: bool,
    allkeys: bool,
    allchannels: bool,
    patterns: Vec<KeyPattern>,
    channels: Vec<Bytes>,
    /// `+select|0`-style first arguments allowed for a command whose bit
    /// is off (Redis's deprecated allowed_firstargs), by command id.
    firstargs: BTreeMap<usize, Vec<String>>,
}

impl Selector {
    fn bit(&self, id: usize) -> bool {
        self.bits[id / 64] & (1 << (id % 64)) != 0
    }

    fn set_bit(&mut self, id: usize, on: bool) {
        if on {
            self.bits[id / 64] |= 1 << (id % 64);
        } else {
            self.bits[id / 64] &= !(1 << (id % 64));
            self.allcommands = false;
        }
    }

    /// `+cmd`/`-cmd`: a container takes its subcommands with it.
    fn change(&mut self, id: usize, on: bool) {
        self.set_bit(id, on);
        self.firstargs.remove(&id);
        for &s in &universe().cmds[id].subs {
            self.set_bit(s, on);
        }
    }

    fn category(&mut self, cat: usize, on: bool) {
        for (id, c) in universe().cmds.iter().enumerate() {
            if c.cats & (1 << cat) != 0 {
                self.change(id, on);
            }
        }
    }

    fn all(&mut self, on: bool) {
        self.bits = if on {
            [u64::MAX; BITS / 64]
        } else {
            [0; BITS / 64]
        };
        self.allcommands = on;
        self.firstargs.clear();
    }

    /// Applies one rule that is not about the user as a whole.
    fn apply(&mut self, op: &[u8]) -> Result<(), RuleError> {
        let lower = op.to_ascii_lowercase();
        match lower.as_slice() {
            b"allkeys" | b"~*" => {
                self.allkeys = true;
                self.patterns.clear();
            }
            b"resetkeys" => {
                self.allkeys = false;
                self.patterns.clear();
            }
            b"allchannels" | b"&*" => {
                self.allchannels = true;
                self.channels.clear();
            }
            b"resetchannels" => {
                self.allchannels = false;
                self.channels.clear();
            }
            b"allcommands" | b"+@all" => self.all(true),
            b"nocommands" | b"-@all" => self.all(false),
            _ => return self.apply_pattern_or_command(op),
        }
        Ok(())
    }

    fn apply_pattern_or_command(&mut self, op: &[u8]) -> Result<(), RuleError> {
        match op.first() {
            Some(b'~' | b'%') => {
                if self.allkeys {
                    return Err(RuleError::AfterAllKeys);
                }
                let (flags, offset) = if op[0] == b'%' {
                    let mut flags = 0;
                    let mut offset = 1;
                    while offset < op.len() {
                        match op[offset] {
                            b'R' | b'r' if flags & KEY_READ == 0 => flags |= KEY_READ,
                            b'W' | b'w' if flags & KEY_WRITE == 0 => flags |= KEY_WRITE,
                            b'~' => {
                                offset += 1;
                                break;
                            }
                            _ => return Err(RuleError::Syntax),
                        }
                        offset += 1;
                    }
                    (flags, offset)
                } else {
                    (KEY_READ | KEY_WRITE, 1)
                };
                let pattern = &op[offset.min(op.len())..];
                if has_spaces(pattern) {
                    return Err(RuleError::Syntax);
                }
                match self.patterns.iter_mut().find(|p| p.pattern == pattern) {
                    Some(p) => p.flags |= flags,
                    None => self.patterns.push(KeyPattern {
                        flags,
                        pattern: Bytes::copy_from_slice(pattern),
                    }),
                }
                self.allkeys = false;
            }
            Some(b'&') => {
                if self.allchannels {
                    return Err(RuleError::AfterAllChannels);
                }
                let pattern = &op[1..];
                if has_spaces(pattern) {
                    return Err(RuleError::Syntax);
                }
                if !self.channels.iter().any(|c| c == pattern) {
                    self.channels.push(Bytes::copy_from_slice(pattern));
                }
                self.allchannels = false;
            }
            Some(sign @ (b'+' | b'-')) => {
                let on = *sign == b'+';
                let rest = String::from_utf8_lossy(&op[1..]).to_ascii_lowercase();
                if let Some(cat) = rest.strip_prefix('@') {
                    let i = CATEGORIES
                        .iter()
                        .position(|c| *c == cat)
                        .ok_or(RuleError::Unknown)?;
                    self.category(i, on);
                    return Ok(());
                }
                let u = universe();
                match rest.rsplit_once('|') {
                    Some((cmd, sub)) if on => {
                        let &id = u.by_name.get(cmd).ok_or(RuleError::Unknown)?;
                        if u.cmds[id].parent.is_some() {
                            return Err(RuleError::FirstArgOfSubcommand);
                        }
                        if sub.is_empty() {
                            return Err(RuleError::Syntax);
                        }
                        if u.cmds[id].subs.is_empty() {
                            tracing::warn!(
                                "Deprecation warning: Allowing a first arg of an otherwise blocked command is a misuse of ACL and may get disabled in the future (offender: +{rest})"
                            );
                            let list = self.firstargs.entry(id).or_default();
                            if !list.iter().any(|a| a.eq_ignore_ascii_case(sub)) {
                                list.push(sub.to_string());
                            }
                        } else {
                            let &sid = u.by_name.get(&rest).ok_or(RuleError::Unknown)?;
                            self.change(sid, true);
                        }
                    }
                    _ => {
                        let &id = u.by_name.get(&rest).ok_or(RuleError::Unknown)?;
                        self.change(id, on);
                    }
                }
            }
            _ => return Err(RuleError::Syntax),
        }
        Ok(())
    }

    /// Whether the selector may run the call (command and keys).
    fn check(
        &self,
        spec: &'static CommandSpec,
        args: &[Bytes],
        no_auth: bool,
    ) -> Result<(), Denied> {
        if !self.allcommands && !no_auth {
            let id = call_id(spec, args).ok_or(Denied::Command)?;
            if !self.bit(id) {
                let cmd = &universe().cmds[id];
                let idx = if cmd.parent.is_some() { 2 } else { 1 };
                let allowed = self.firstargs.get(&id).is_some_and(|list| {
                    args.get(idx)
                        .is_some_and(|a| list.iter().any(|f| a.eq_ignore_ascii_case(f.as_bytes())))
                });
                if !allowed {
                    return Err(Denied::Command);
                }
            }
        }
        if !self.allkeys {
            for (i, need) in spec.keys(args) {
                let key = &args[i];
                let ok = self.patterns.iter().any(|p| {
                    p.flags & need == need && crate::glob::matches(&p.pattern, key, false)
                });
                if !ok {
                    return Err(Denied::Key(i));
                }
            }
        }
        Ok(())
    }

    /// `~* &* +@all`-style description (ACL LIST), Redis's format.
    fn describe(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.allkeys {
            out.extend_from_slice(b"~* ");
        } else {
            for p in &self.patterns {
                p.describe(&mut out);
                out.push(b' ');
            }
        }
        if self.allchannels {
            out.extend_from_slice(b"&* ");
        } else {
            out.extend_from_slice(b"resetchannels ");
            for c in &self.channels {
                out.push(b'&');
                out.extend_from_slice(c);
                out.push(b' ');
            }
        }
        out.extend_from_slice(self.describe_commands().as_bytes());
        out
    }

    /// The command rules, as Redis 7.0's ACLDescribeSelectorCommandRules
    /// finds them: start from +@all or -@all, add the categories that fit
    /// best, then single commands until the bitmap is matched exactly.
    fn describe_commands(&self) -> String {
        let u = universe();
        let mut rules = String::new();
        let mut fake = Selector::default();
        let additive = !self.bit(FUTURE_BIT);
        if additive {
            rules.push_str("-@all ");
            fake.all(false);
        } else {
            rules.push_str("+@all ");
            fake.all(true);
        }
        let mut temp = Selector {
            bits: self.bits,
            ..Selector::default()
        };
        let mut applied = vec![false; CATEGORIES.len()];
        loop {
            let mut best = None;
            let (mut mindiff, mut maxsame) = (usize::MAX, 0usize);
            for (j, _) in CATEGORIES.iter().enumerate() {
                if applied[j] {
                    continue;
                }
                let (mut on, mut off) = (0usize, 0usize);
                for (id, c) in u.cmds.iter().enumerate() {
                    if c.cats & (1 << j) != 0 {
                        if temp.bit(id) {
                            on += 1;
                        } else {
                            off += 1;
                        }
                    }
                }
                let (diff, same) = if additive { (off, on) } else { (on, off) };
                if same > diff && (diff < mindiff || (diff == mindiff && same > maxsame)) {
                    best = Some(j);
                    mindiff = diff;
                    maxsame = same;
                }
            }
            let Some(best) = best else { break };
            fake.category(best, additive);
            temp.category(best, !additive);
            rules.push_str(if additive { "+@" } else { "-@" });
            rules.push_str(CATEGORIES[best]);
            rules.push(' ');
            applied[best] = true;
        }
        // Single commands, containers before their subcommands, as Redis
        // walks its command table.
        let order = u
            .cmds
            .iter()
            .enumerate()
            .filter(|(_, c)| c.parent.is_none());
        for (id, c) in order {
            for i in std::iter::once(id).chain(c.subs.iter().copied()) {
                let user = self.bit(i);
                if user != fake.bit(i) {
                    rules.push(if user { '+' } else { '-' });
                    rules.push_str(&u.cmds[i].fullname);
                    rules.push(' ');
                    fake.change(i, user);
                }
                if !user && let Some(list) = self.firstargs.get(&i) {
                    for f in list {
                        rules.push('+');
                        rules.push_str(&u.cmds[i].fullname);
                        rules.push('|');
                        rules.push_str(f);
                        rules.push(' ');
                    }
                }
            }
        }
        rules.pop();
        rules
    }
}

/// Why a call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    Command,
    /// The argument index of the first key refused.
    Key(usize),
}

/// Why a rule was refused, with Redis's texts (ACLSetUserStringError).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleError {
    Unknown,
    Syntax,
    AfterAllKeys,
    AfterAllChannels,
    NoSuchPassword,
    BadHash,
    FirstArgOfSubcommand,
}

impl RuleError {
    pub(crate) fn text(self) -> &'static str {
        match self {
            RuleError::Unknown => "Unknown command or category name in ACL",
            RuleError::Syntax => "Syntax error",
            RuleError::AfterAllKeys => {
                "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns"
            }
            RuleError::AfterAllChannels => {
                "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels"
            }
            RuleError::NoSuchPassword => {
                "The password you are trying to remove from the user does not exist"
            }
            RuleError::BadHash => {
                "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"
            }
            RuleError::FirstArgOfSubcommand => {
                "Allowing first-arg of a subcommand is not supported"
            }
        }
    }
}

/// Whether a name or pattern has white space or NUL (refused, as in Redis).
pub(crate) fn has_spaces(s: &[u8]) -> bool {
    s.iter()
        .any(|&c| c == 0 || matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
}

/// The SHA-256 of a password, in lower-case hex (what is stored).
pub(crate) fn hash_password(pass: &[u8]) -> String {
    let digest = Sha256::digest(pass);
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

fn valid_hash(h: &[u8]) -> bool {
    h.len() == 64 && h.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// One user.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) name: Bytes,
    /// `on` (true) or `off`.
    enabled: bool,
    nopass: bool,
    /// None: neither flag was ever set (only ever shown after `reset`).
    sanitize_payload: Option<bool>,
    /// SHA-256 hex of each password, in the order added.
    passwords: Vec<String>,
    selector: Selector,
}

impl User {
    /// A new user: off, no password, no commands, no keys (as Redis creates it).
    pub(crate) fn new(name: Bytes) -> User {
        User {
            name,
            enabled: false,
            nopass: false,
            sanitize_payload: None,
            passwords: Vec::new(),
            selector: Selector::default(),
        }
    }

    /// The default user as a fresh server has it: on, nopass, every
    /// command, key and channel.
    pub(crate) fn default_user() -> User {
        let mut u = User::new(Bytes::from_static(b"default"));
        for op in ["+@all", "~*", "&*", "on", "nopass"] {
            // These rules are valid.
            let _ = u.apply(op.as_bytes());
        }
        u
    }

    /// Whether the user may run anything on any key: no check needed.
    pub(crate) fn unrestricted(&self) -> bool {
        self.selector.allcommands && self.selector.allkeys
    }

    /// Applies one rule (ACLSetUser).
    ///
    /// # Errors
    ///
    /// A rule Redis refuses, with its reason.
    pub(crate) fn apply(&mut self, op: &[u8]) -> Result<(), RuleError> {
        if op.is_empty() {
            return Ok(());
        }
        let lower = op.to_ascii_lowercase();
        match lower.as_slice() {
            b"on" => self.enabled = true,
            b"off" => self.enabled = false,
            b"skip-sanitize-payload" => self.sanitize_payload = Some(false),
            b"sanitize-payload" => self.sanitize_payload = Some(true),
            b"nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            b"resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            b"reset" => {
                self.nopass = false;
                self.passwords.clear();
                self.selector.apply(b"resetkeys")?;
                self.selector.apply(b"resetchannels")?;
                self.enabled = false;
                self.sanitize_payload = Some(true);
                self.selector.apply(b"-@all")?;
            }
            b"clearselectors" => {}
            _ => match op[0] {
                b'>' | b'#' => {
                    let hash = if op[0] == b'>' {
                        hash_password(&op[1..])
                    } else {
                        if !valid_hash(&op[1..]) {
                            return Err(RuleError::BadHash);
                        }
                        String::from_utf8_lossy(&op[1..]).into_owned()
                    };
                    if !self.passwords.contains(&hash) {
                        self.passwords.push(hash);
                    }
                    self.nopass = false;
                }
                b'<' | b'!' => {
                    let hash = if op[0] == b'<' {
                        hash_password(&op[1..])
                    } else {
                        if !valid_hash(&op[1..]) {
                            return Err(RuleError::BadHash);
                        }
                        String::from_utf8_lossy(&op[1..]).into_owned()
                    };
                    let Some(i) = self.passwords.iter().position(|p| *p == hash) else {
                        return Err(RuleError::NoSuchPassword);
                    };
                    self.passwords.remove(i);
                }
                // Selectors are not supported.
                b'(' => return Err(RuleError::Syntax),
                _ => self.selector.apply(op)?,
            },
        }
        Ok(())
    }

    /// Whether `pass` is one of the user's passwords (or it has none to
    /// give: nopass). Compared hash against hash in constant time.
    fn password_ok(&self, pass: &[u8]) -> bool {
        if self.nopass {
            return true;
        }
        let hashed = hash_password(pass);
        // Every stored hash is compared, so the time does not say which matched.
        self.passwords.iter().fold(false, |ok, p| {
            ok | crate::cmd::auth::constant_time_eq(p.as_bytes(), hashed.as_bytes())
        })
    }

    /// Whether the user may run the call.
    ///
    /// # Errors
    ///
    /// What is refused: the command, or a key (its argument index).
    pub(crate) fn check(&self, spec: &'static CommandSpec, args: &[Bytes]) -> Result<(), Denied> {
        self.selector
            .check(spec, args, spec.flags.contains(&"no_auth"))
    }

    /// Flags in Redis's order (ACLUserFlags).
    pub(crate) fn flags(&self) -> Vec<&'static str> {
        let mut f = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            f.push("nopass");
        }
        match self.sanitize_payload {
            Some(false) => f.push("skip-sanitize-payload"),
            Some(true) => f.push("sanitize-payload"),
            None => {}
        }
        f
    }

    /// The password hashes.
    pub(crate) fn password_hashes(&self) -> &[String] {
        &self.passwords
    }

    /// The command rules (ACL GETUSER's `commands`).
    pub(crate) fn describe_commands(&self) -> String {
        self.selector.describe_commands()
    }

    /// The key patterns (ACL GETUSER's `keys`).
    pub(crate) fn describe_keys(&self) -> Vec<u8> {
        if self.selector.allkeys {
            return b"~*".to_vec();
        }
        let mut out = Vec::new();
        for (i, p) in self.selector.patterns.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            p.describe(&mut out);
        }
        out
    }

    /// The channel patterns (ACL GETUSER's `channels`).
    pub(crate) fn describe_channels(&self) -> Vec<u8> {
        if self.selector.allchannels {
            return b"&*".to_vec();
        }
        let mut out = Vec::new();
        for (i, c) in self.selector.channels.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.push(b'&');
            out.extend_from_slice(c);
        }
        out
    }

    /// The user's rules as ACL LIST and the ACL file show them (without
    /// `user <name> `).
    pub(crate) fn describe(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for f in self.flags() {
            out.extend_from_slice(f.as_bytes());
            out.push(b' ');
        }
        for p in &self.passwords {
            out.push(b'#');
            out.extend_from_slice(p.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.selector.describe());
        out
    }
}

/// Why a denial or failed authentication was logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Command,
    Key,
    Auth,
}

impl Reason {
    fn name(self) -> &'static str {
        match self {
            Reason::Command => "command",
            Reason::Key => "key",
            Reason::Auth => "auth",
        }
    }
}

/// One ACL LOG entry. Never holds a password: the object is the command
/// name, the key, or for a failed AUTH the command's name.
#[derive(Debug, Clone)]
pub(crate) struct LogEntry {
    pub(crate) count: u64,
    pub(crate) reason: Reason,
    /// `toplevel` or `multi`.
    pub(crate) context: &'static str,
    pub(crate) object: Bytes,
    pub(crate) username: Bytes,
    /// Unix ms of the last occurrence.
    pub(crate) ctime: u64,
    pub(crate) client_info: String,
}

impl LogEntry {
    pub(crate) fn reason_name(&self) -> &'static str {
        self.reason.name()
    }
}

/// Entries ACL LOG keeps (Redis's `acllog-max-len` default).
const LOG_MAX: usize = 128;
/// Similar entries within this many ms are counted as one (Redis's
/// ACL_LOG_GROUPING_MAX_TIME_DELTA).
const LOG_GROUPING_MS: u64 = 60_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Every user, the ACL log and the denial counters.
#[derive(Debug)]
pub struct Acl {
    users: RwLock<BTreeMap<Bytes, Arc<User>>>,
    /// Bumped on every change: sessions refresh their user when it moved.
    generation: AtomicU64,
    /// Whether a new client must authenticate: the default user has a
    /// password (not nopass) or is off (Redis's authRequired).
    auth_required: AtomicBool,
    log: Mutex<VecDeque<LogEntry>>,
    pub(crate) denied_auth: AtomicU64,
    pub(crate) denied_cmd: AtomicU64,
    pub(crate) denied_key: AtomicU64,
}

impl Acl {
    /// Users as a fresh server has them: `default`, with `requirepass` as
    /// its password if given.
    pub(crate) fn new(requirepass: Option<&str>) -> Acl {
        let acl = Acl {
            users: RwLock::new(BTreeMap::new()),
            generation: AtomicU64::new(0),
            auth_required: AtomicBool::new(false),
            log: Mutex::new(VecDeque::new()),
            denied_auth: AtomicU64::new(0),
            denied_cmd: AtomicU64::new(0),
            denied_key: AtomicU64::new(0),
        };
        let mut d = User::default_user();
        set_default_password(&mut d, requirepass);
        acl.replace_all(BTreeMap::from([(d.name.clone(), Arc::new(d))]));
        acl
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Bytes, Arc<User>>> {
        self.users.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Bytes, Arc<User>>> {
        self.users.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The generation of the users: changes whenever one changes.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self, users: &BTreeMap<Bytes, Arc<User>>) {
        let required = users
            .get(b"default".as_slice())
            .is_none_or(|d| !d.nopass || !d.enabled);
        self.auth_required.store(required, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn replace_all(&self, users: BTreeMap<Bytes, Arc<User>>) {
        let mut w = self.write();
        *w = users;
        self.changed(&w);
    }

    /// Whether a client that has not authenticated must (Redis's
    /// authRequired: the default user has a password or is off).
    pub fn auth_required(&self) -> bool {
        self.auth_required.load(Ordering::Acquire)
    }

    /// Whether the default user can be used without a password: on and
    /// nopass (protected mode treats that as "no password set").
    pub fn default_user_is_open(&self) -> bool {
        !self.auth_required()
    }

    /// A user by name.
    pub(crate) fn user(&self, name: &[u8]) -> Option<Arc<User>> {
        self.read().get(name).cloned()
    }

    /// Every user, by name.
    pub(crate) fn users(&self) -> Vec<Arc<User>> {
        self.read().values().cloned().collect()
    }

    /// ACL SETUSER: applies the rules to a copy of the user (or a new
    /// one), and stores it only if every rule is valid.
    ///
    /// # Errors
    ///
    /// Redis's text naming the rule refused; nothing changes.
    pub(crate) fn set_user(&self, name: &[u8], rules: &[Bytes]) -> Result<(), String> {
        let mut w = self.write();
        let mut u = match w.get(name) {
            Some(u) => (**u).clone(),
            None => User::new(Bytes::copy_from_slice(name)),
        };
        for r in rules {
            if let Err(e) = u.apply(r) {
                return Err(format!(
                    "Error in ACL SETUSER modifier '{}': {}",
                    String::from_utf8_lossy(r),
                    e.text()
                ));
            }
        }
        w.insert(u.name.clone(), Arc::new(u));
        self.changed(&w);
        Ok(())
    }

    /// `requirepass`: the default user's only password, or nopass.
    pub(crate) fn set_requirepass(&self, pass: Option<&str>) {
        let mut w = self.write();
        let mut d = w
            .get(b"default".as_slice())
            .map(|u| (**u).clone())
            .unwrap_or_else(User::default_user);
        set_default_password(&mut d, pass);
        w.insert(d.name.clone(), Arc::new(d));
        self.changed(&w);
    }

    /// ACL DELUSER: removes the users that exist; returns those removed.
    pub(crate) fn delete(&self, names: &[Bytes]) -> Vec<Bytes> {
        let mut w = self.write();
        let gone: Vec<Bytes> = names
            .iter()
            .filter_map(|n| w.remove(n.as_ref()).map(|u| u.name.clone()))
            .collect();
        self.changed(&w);
        gone
    }

    /// Checks credentials (ACLCheckUserCredentials): the user exists, is
    /// on, and the password is one of its own (or it is nopass).
    pub(crate) fn authenticate(&self, name: &[u8], pass: &[u8]) -> Option<Arc<User>> {
        let u = self.user(name)?;
        (u.enabled && u.password_ok(pass)).then_some(u)
    }

    /// Records a denial or failed authentication in ACL LOG, merging it
    /// with a similar recent entry as Redis does.
    pub(crate) fn log(
        &self,
        reason: Reason,
        in_multi: bool,
        object: Bytes,
        username: Bytes,
        client_info: String,
    ) {
        match reason {
            Reason::Command => &self.denied_cmd,
            Reason::Key => &self.denied_key,
            Reason::Auth => &self.denied_auth,
        }
        .fetch_add(1, Ordering::Relaxed);
        let entry = LogEntry {
            count: 1,
            reason,
            context: if in_multi { "multi" } else { "toplevel" },
            object,
            username,
            ctime: now_ms(),
            client_info,
        };
        let Ok(mut log) = self.log.lock() else {
            return;
        };
        let similar = log.iter().take(10).position(|e| {
            e.reason == entry.reason
                && e.context == entry.context
                && e.ctime.abs_diff(entry.ctime) <= LOG_GROUPING_MS
                && e.object == entry.object
                && e.username == entry.username
        });
        if let Some(i) = similar
            && let Some(mut e) = log.remove(i)
        {
            e.count += 1;
            e.ctime = entry.ctime;
            e.client_info = entry.client_info;
            log.push_front(e);
            return;
        }
        log.push_front(entry);
        log.truncate(LOG_MAX);
    }

    /// The newest `count` entries of ACL LOG.
    pub(crate) fn log_entries(&self, count: usize) -> Vec<LogEntry> {
        self.log
            .lock()
            .map(|l| l.iter().take(count).cloned().collect())
            .unwrap_or_default()
    }

    /// ACL LOG RESET.
    pub(crate) fn log_reset(&self) {
        if let Ok(mut l) = self.log.lock() {
            l.clear();
        }
    }

    /// The ACL file's text for the users in memory (ACL SAVE).
    pub(crate) fn file_text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for u in self.read().values() {
            out.extend_from_slice(b"user ");
            out.extend_from_slice(&u.name);
            out.push(b' ');
            out.extend_from_slice(&u.describe());
            out.push(b'\n');
        }
        out
    }

    /// ACL LOAD and the start-up load: reads every user from `path`
    /// (shown as `shown` in errors) and replaces the users in memory, or
    /// changes nothing if any line is wrong. Returns the names of the
    /// users replaced (their clients are to be disconnected).
    ///
    /// # Errors
    ///
    /// Redis's one-line description of every problem found.
    pub(crate) fn load_file(
        &self,
        path: &std::path::Path,
        shown: &str,
    ) -> Result<Vec<Bytes>, String> {
        let text = std::fs::read(path).map_err(|e| {
            format!(
                "Error loading ACLs, opening file '{}': {}",
                shown,
                io_error_text(&e)
            )
        })?;
        let users = parse_file(&text, shown)?;
        let mut w = self.write();
        let old: Vec<Bytes> = w
            .keys()
            .filter(|n| n.as_ref() != b"default")
            .cloned()
            .collect();
        *w = users;
        self.changed(&w);
        Ok(old)
    }
}

/// strerror's text for the common errors (Rust adds " (os error N)").
fn io_error_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn set_default_password(d: &mut User, pass: Option<&str>) {
    d.nopass = false;
    d.passwords.clear();
    match pass {
        Some(p) => {
            d.passwords.push(hash_password(p.as_bytes()));
        }
        None => d.nopass = true,
    }
}

/// Parses an ACL file as Redis's ACLLoadFromFile does.
fn parse_file(text: &[u8], shown: &str) -> Result<BTreeMap<Bytes, Arc<User>>, String> {
    let mut users: BTreeMap<Bytes, Arc<User>> = BTreeMap::new();
    let mut errors = String::new();
    for (i, line) in text.split(|&c| c == b'\n').enumerate() {
        let n = i + 1;
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let argv: Vec<&[u8]> = line.split(|&c| c == b' ').collect();
        if argv[0] != b"user" || argv.len() < 2 {
            errors.push_str(&format!(
                "{shown}:{n} should start with user keyword followed by the username. "
            ));
            continue;
        }
        let name = argv[1];
        if has_spaces(name) {
            errors.push_str(&format!(
                "'{shown}:{n}: username '{}' contains invalid characters. ",
                String::from_utf8_lossy(name)
            ));
            continue;
        }
        if users.contains_key(name) {
            errors.push_str(&format!(
                "WARNING: Duplicate user '{}' found on line {n}. ",
                String::from_utf8_lossy(name)
            ));
            continue;
        }
        let mut u = User::new(Bytes::copy_from_slice(name));
        let mut syntax_error = false;
        for op in &argv[2..] {
            let op = op.trim_ascii();
            if let Err(e) = u.apply(op) {
                if e == RuleError::Unknown {
                    errors.push_str(&format!(
                        "{shown}:{n}: Error in applying operation '{}': {}. ",
                        String::from_utf8_lossy(op),
                        e.text()
                    ));
                } else if !syntax_error {
                    errors.push_str(&format!("{shown}:{n}: {}. ", e.text()));
                    syntax_error = true;
                }
            }
        }
        users.insert(u.name.clone(), Arc::new(u));
    }
    if !errors.is_empty() {
        errors.push_str(
            "WARNING: ACL errors detected, no change to the previously active ACL rules was performed",
        );
        return Err(errors);
    }
    users
        .entry(Bytes::from_static(b"default"))
        .or_insert_with(|| Arc::new(User::default_user()));
    Ok(users)
}

/// A client's user: an `Arc` of its rules, refreshed when the users change.
#[derive(Debug, Clone)]
pub(crate) struct ClientUser {
    pub(crate) user: Arc<User>,
    generation: u64,
}

impl ClientUser {
    /// The user `user`, as of now.
    pub(crate) fn new(acl: &Acl, user: Arc<User>) -> ClientUser {
        ClientUser {
            generation: acl.generation(),
            user,
        }
    }

    /// The default user.
    pub(crate) fn default_of(acl: &Acl) -> ClientUser {
        let generation = acl.generation();
        let user = acl
            .user(b"default")
            .unwrap_or_else(|| Arc::new(User::default_user()));
        ClientUser { user, generation }
    }

    /// The user's current rules: one atomic load while nothing changed. A
    /// user deleted meanwhile has no rights left (its clients are being
    /// disconnected).
    pub(crate) fn current(&mut self, acl: &Acl) -> &User {
        let g = acl.generation();
        if g != self.generation {
            self.generation = g;
            self.user = acl
                .user(&self.user.name)
                .unwrap_or_else(|| Arc::new(User::new(self.user.name.clone())));
        }
        &self.user
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::table::lookup;

    fn user(rules: &[&str]) -> User {
        let mut u = User::new(Bytes::from_static(b"u"));
        for r in rules {
            u.apply(r.as_bytes()).unwrap();
        }
        u
    }

    fn args(a: &[&str]) -> Vec<Bytes> {
        a.iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    fn check(u: &User, a: &[&str]) -> Result<(), Denied> {
        let spec = lookup(&a[0].to_ascii_lowercase()).unwrap();
        u.check(spec, &args(a))
    }

    #[test]
    fn describes_as_redis_does() {
        assert_eq!(User::default_user().describe(), b"on nopass ~* &* +@all");
        let u = user(&["on", "~orders:*", "-@all", "+delayadd"]);
        assert_eq!(
            String::from_utf8_lossy(&u.describe()),
            "on ~orders:* resetchannels -@all +delayadd"
        );
        assert_eq!(
            user(&["+@all", "-delayadd"]).describe_commands(),
            "+@all -delayadd"
        );
        assert_eq!(user(&["+@read"]).describe_commands(), "-@all +@read");
        assert_eq!(
            user(&["+client|id"]).describe_commands(),
            "-@all +client|id"
        );
        assert_eq!(user(&["+select|0"]).describe_commands(), "-@all +select|0");
    }

    #[test]
    fn commands_subcommands_and_keys_are_checked() {
        let u = user(&["on", "~orders:*", "+delayadd", "+client|id", "+select|0"]);
        assert_eq!(check(&u, &["DELAYADD", "orders:1", "1", "m"]), Ok(()));
        assert_eq!(
            check(&u, &["DELAYADD", "other", "1", "m"]),
            Err(Denied::Key(1))
        );
        assert_eq!(check(&u, &["DELAYPOP", "orders:1"]), Err(Denied::Command));
        assert_eq!(check(&u, &["CLIENT", "ID"]), Ok(()));
        assert_eq!(check(&u, &["CLIENT", "KILL", "x"]), Err(Denied::Command));
        assert_eq!(check(&u, &["SELECT", "0"]), Ok(()));
        assert_eq!(check(&u, &["SELECT", "1"]), Err(Denied::Command));
        // AUTH and HELLO need no permission.
        assert_eq!(check(&u, &["AUTH", "x"]), Ok(()));
        let p = user(&["+delaypop", "~orders:*"]);
        let dlq = [
            "DELAYPOP",
            "orders:1",
            "LEASE",
            "1",
            "RETRIES",
            "1",
            "DEADLETTER",
            "dead",
        ];
        assert_eq!(check(&p, &dlq), Err(Denied::Key(7)));
        let r = user(&["+@all", "%R~*"]);
        assert_eq!(check(&r, &["DELAYCARD", "q"]), Ok(()));
        assert_eq!(check(&r, &["DELAYADD", "q", "1", "m"]), Err(Denied::Key(1)));
        assert_eq!(check(&r, &["EXISTS", "q"]), Ok(()));
    }

    #[test]
    fn rule_errors() {
        let mut u = User::new(Bytes::from_static(b"u"));
        assert_eq!(u.apply(b"+nosuch"), Err(RuleError::Unknown));
        assert_eq!(u.apply(b"+@nosuch"), Err(RuleError::Unknown));
        assert_eq!(u.apply(b"bogus"), Err(RuleError::Syntax));
        assert_eq!(u.apply(b"#abc"), Err(RuleError::BadHash));
        assert_eq!(u.apply(b"<nope"), Err(RuleError::NoSuchPassword));
        assert_eq!(
            u.apply(b"+client|id|x"),
            Err(RuleError::FirstArgOfSubcommand)
        );
        assert_eq!(u.apply(b"+delayadd|"), Err(RuleError::Syntax));
        u.apply(b"allkeys").unwrap();
        assert_eq!(u.apply(b"~x"), Err(RuleError::AfterAllKeys));
    }

    #[test]
    fn passwords_are_hashed_and_checked() {
        let acl = Acl::new(Some("secret"));
        assert!(acl.auth_required());
        assert!(acl.authenticate(b"default", b"secret").is_some());
        assert!(acl.authenticate(b"default", b"nope").is_none());
        acl.set_user(b"alice", &args(&[">pw"])).unwrap();
        // Off until `on`.
        assert!(acl.authenticate(b"alice", b"pw").is_none());
        acl.set_user(b"alice", &args(&["on"])).unwrap();
        assert!(acl.authenticate(b"alice", b"pw").is_some());
        assert!(!String::from_utf8_lossy(&acl.file_text()).contains("pw "));
        acl.set_requirepass(None);
        assert!(!acl.auth_required());
    }
}
