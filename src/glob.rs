//! Glob-style pattern matching with Redis's rules (`KEYS`, `SCAN MATCH`,
//! `CONFIG GET`): `*`, `?`, `[abc]`, `[^a]`, `[a-z]` and `\` escapes.

/// Whether `s` matches `pattern`.
pub fn matches(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
    // Iterative matcher with backtracking to the last `*`: linear-ish and no
    // recursion, so a hostile pattern cannot exhaust the stack.
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    let eq = |a: u8, b: u8| {
        if nocase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    while i < s.len() {
        let mut advanced = false;
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, i));
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    advanced = true;
                }
                b'[' => {
                    if let Some((matched, next)) = class(pattern, p, s[i], nocase)
                        && matched
                    {
                        p = next;
                        i += 1;
                        advanced = true;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if eq(pattern[p + 1], s[i]) {
                        p += 2;
                        i += 1;
                        advanced = true;
                    }
                }
                c => {
                    if eq(c, s[i]) {
                        p += 1;
                        i += 1;
                        advanced = true;
                    }
                }
            }
        }
        if !advanced {
            match star {
                Some((sp, si)) => {
                    p = sp;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            }
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

/// Matches `c` against the class starting at `pattern[start] == b'['`.
/// Returns whether it matched and the index after the class.
fn class(pattern: &[u8], start: usize, c: u8, nocase: bool) -> Option<(bool, usize)> {
    let mut p = start + 1;
    let not = pattern.get(p) == Some(&b'^');
    if not {
        p += 1;
    }
    let fold = |x: u8| if nocase { x.to_ascii_lowercase() } else { x };
    let c = fold(c);
    let mut matched = false;
    loop {
        match pattern.get(p) {
            // An unterminated class: Redis treats the end as closing it.
            None => break,
            Some(b']') => {
                p += 1;
                break;
            }
            Some(b'\\') if p + 1 < pattern.len() => {
                if fold(pattern[p + 1]) == c {
                    matched = true;
                }
                p += 2;
            }
            Some(&lo) if pattern.get(p + 1) == Some(&b'-') && p + 2 < pattern.len() => {
                let hi = pattern[p + 2];
                let (lo, hi) = if lo > hi { (hi, lo) } else { (lo, hi) };
                if fold(lo) <= c && c <= fold(hi) {
                    matched = true;
                }
                p += 3;
            }
            Some(&x) => {
                if fold(x) == c {
                    matched = true;
                }
                p += 1;
            }
        }
    }
    Some((matched != not, p))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_glob_rules() {
        let m = |p: &str, s: &str| matches(p.as_bytes(), s.as_bytes(), false);
        assert!(m("*", "anything"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("h*llo", "heeeello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("q\\*", "q*"));
        assert!(!m("q\\*", "qa"));
        assert!(m("*:*:end", "a:b:c:end"));
        assert!(!m("a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac"));
        assert!(matches(b"APPEND*", b"appendfsync", true));
    }
}
