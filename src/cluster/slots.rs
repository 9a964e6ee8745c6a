//! Hash slots: which of the 16,384 slots a key belongs to, exactly as Redis
//! Cluster computes it (`keyHashSlot` in Redis's `cluster.c`), so that
//! cluster-aware clients, which compute the slot themselves, send every key
//! straight to the group that owns it.
//!
//! Pure and I/O-free: the cluster layer routes with it, and
//! `compat-tests/cluster_shapes.rs` checks it against a real redis-server.

// Not wired in yet: the cluster layer (src/cluster/mod.rs, being written)
// will call these; remove this allow when it does.

/// The number of hash slots (Redis's `CLUSTER_SLOTS`).
pub(crate) const SLOTS: u16 = 16384;

/// The CRC16 variant Redis uses ("XMODEM": polynomial 0x1021, initial value
/// 0, no reflection, no final xor).
const POLY: u16 = 0x1021;

/// The byte-at-a-time table for [`crc16`], computed at compile time from
/// the polynomial: entry `b` is the CRC of the single byte `b`.
const TABLE: [u16; 256] = crc16_table();

const fn crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut b = 0;
    while b < 256 {
        let mut crc = (b as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ POLY
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[b] = crc;
        b += 1;
    }
    table
}

/// CRC16-XMODEM of `data` (check value: `"123456789"` → 0x31C3).
fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &byte| {
        (crc << 8) ^ TABLE[usize::from((crc >> 8) as u8 ^ byte)]
    })
}

/// The hash slot of `key`, as Redis's `keyHashSlot`: if the key holds a `{`
/// followed later by a `}` with at least one byte between the first `{` and
/// the first `}` after it, only those bytes are hashed (the "hash tag", which
/// lets related keys share a slot); otherwise the whole key is.
pub(crate) fn key_hash_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .map(|close| &rest[..close])
        })
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key);
    crc16(hashed) & (SLOTS - 1)
}

/// A command whose keys fall in different slots (Redis refuses it in
/// cluster mode: one command runs in one group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CrossSlot;

impl CrossSlot {
    /// Redis's error text (`cluster.c`, `getNodeByQuery`).
    pub(crate) const TEXT: &'static str = "CROSSSLOT Keys in request don't hash to the same slot";
}

impl From<CrossSlot> for crate::protocol::Reply {
    fn from(_: CrossSlot) -> Self {
        crate::protocol::Reply::Error(CrossSlot::TEXT.to_string())
    }
}

/// The one slot all of a command's keys hash to: `None` for a command
/// without keys (it may run anywhere), [`CrossSlot`] when two keys differ.
pub(crate) fn command_slot<'a>(
    keys: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<u16>, CrossSlot> {
    let mut slot = None;
    for key in keys {
        let s = key_hash_slot(key);
        match slot {
            None => slot = Some(s),
            Some(first) if first != s => return Err(CrossSlot),
            Some(_) => {}
        }
    }
    Ok(slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC16 computed bit by bit, straight from the definition, to check
    /// the table-driven one against.
    fn crc16_bitwise(data: &[u8]) -> u16 {
        let mut crc = 0u16;
        for &byte in data {
            crc ^= u16::from(byte) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ POLY
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    #[test]
    fn crc16_is_xmodem() {
        // The catalogued check value of CRC-16/XMODEM.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
        assert_eq!(TABLE[1], POLY);
        let all: Vec<u8> = (0..=255).chain((0..=255).rev()).collect();
        for n in 0..all.len() {
            assert_eq!(crc16(&all[..n]), crc16_bitwise(&all[..n]), "prefix {n}");
        }
    }

    #[test]
    fn slots_match_redis_7_0_15() {
        // Each value read from redis-server 7.0.15 --cluster-enabled yes
        // with CLUSTER KEYSLOT.
        let cases: &[(&[u8], u16)] = &[
            (b"123456789", 12739),
            (b"{user1000}.following", 3443),
            (b"{user1000}.followers", 3443),
            (b"foo{}{bar}", 8363),
            (b"foo{{bar}}zap", 4015),
            (b"{bar", 4015),
            (b"{}", 15257),
            (b"", 0),
        ];
        for (key, slot) in cases {
            assert_eq!(
                key_hash_slot(key),
                *slot,
                "{:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn hash_tag_rule() {
        // Only the first `{` and the first `}` after it count.
        assert_eq!(key_hash_slot(b"a{tag}b{x}"), key_hash_slot(b"tag"));
        assert_eq!(key_hash_slot(b"}{tag}"), key_hash_slot(b"tag"));
        assert_eq!(key_hash_slot(b"{{tag}"), key_hash_slot(b"{tag"));
        // No `}` after the `{`, or nothing between: the whole key.
        assert_eq!(key_hash_slot(b"x}{"), crc16(b"x}{") & 0x3FFF);
        assert_eq!(key_hash_slot(b"{}tag}"), crc16(b"{}tag}") & 0x3FFF);
        // Binary bytes are hashed like any other.
        assert_eq!(key_hash_slot(b"\0{\xff\r\n}"), key_hash_slot(b"\xff\r\n"));
        // Every slot is below SLOTS.
        for n in 0..2000u32 {
            assert!(key_hash_slot(&n.to_le_bytes()) < SLOTS);
        }
    }

    #[test]
    fn command_slot_needs_one_slot() {
        let none: [&[u8]; 0] = [];
        assert_eq!(command_slot(none.into_iter()), Ok(None));
        assert_eq!(
            command_slot([&b"123456789"[..]].into_iter()),
            Ok(Some(12739))
        );
        assert_eq!(
            command_slot(
                [
                    &b"{user1000}.following"[..],
                    b"{user1000}.followers",
                    b"user1000"
                ]
                .into_iter()
            ),
            Ok(Some(3443))
        );
        assert_eq!(
            command_slot([&b"a"[..], b"a", b"b"].into_iter()),
            Err(CrossSlot)
        );
        assert_eq!(
            crate::protocol::Reply::from(CrossSlot),
            crate::protocol::Reply::Error(
                "CROSSSLOT Keys in request don't hash to the same slot".into()
            )
        );
    }
}
