//! Nesting bounds, checked before a decoder recurses.
//!
//! serde's decoders recurse once per level of nesting. `serde_json` stops at 128 levels,
//! but CBOR decoded through serde has no limit: a few kilobytes of nested arrays would
//! overflow the stack of the task decoding them, and with it the whole process. Every
//! payload (JSON or CBOR, binary protocol or JSON dialect) is therefore scanned first,
//! without recursion and without allocating, and refused past [`MAX_DEPTH`] levels. The
//! scans only count nesting: anything else malformed is left to the decoder, which names
//! the fault (a decoder never reaches past the first malformed byte, so nothing it
//! recurses into goes unchecked).

/// The most levels of nesting a payload may have. The top-level object is level 1, so
/// `{"a":[1]}` has two. The same for JSON and CBOR (where a tag counts as a level too),
/// and for the relay path's one-pass check.
pub const MAX_DEPTH: usize = 64;

/// A payload nested deeper than [`MAX_DEPTH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("nesting deeper than {MAX_DEPTH} levels")]
pub struct TooDeep;

/// Checks that JSON text nests at most [`MAX_DEPTH`] levels.
pub fn check_json(bytes: &[u8]) -> Result<(), TooDeep> {
    // Nesting past the limit takes more brackets than a shorter text holds.
    if bytes.len() <= MAX_DEPTH {
        return Ok(());
    }
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string: up to the next quote not escaped by a backslash.
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Checks that CBOR (RFC 8949) nests at most [`MAX_DEPTH`] levels: arrays, maps, tags and
/// indefinite-length strings each open a level.
pub fn check_cbor(bytes: &[u8]) -> Result<(), TooDeep> {
    // Items left in each open container; `None` for an indefinite length (ends at a break).
    let mut open: [Option<u64>; MAX_DEPTH] = [None; MAX_DEPTH];
    let mut depth = 0usize;
    let mut i = 0usize;
    while let Some(&initial) = bytes.get(i) {
        i += 1;
        let major = initial >> 5;
        let info = initial & 0x1f;
        if initial == 0xff {
            // A break closes the innermost indefinite container.
            if depth == 0 || open[depth - 1].is_some() {
                return Ok(()); // malformed: the decoder says so
            }
            depth -= 1;
            finish_item(&mut open, &mut depth);
            continue;
        }
        let arg = match info {
            0..=23 => Some(u64::from(info)),
            24..=27 => {
                let n = 1usize << (info - 24);
                let Some(b) = bytes.get(i..i + n) else {
                    return Ok(());
                };
                i += n;
                Some(b.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
            }
            31 if matches!(major, 2..=5) => None,
            _ if major == 7 => Some(0), // simple values and floats of the short forms
            _ => return Ok(()),
        };
        let children = match (major, arg) {
            (0 | 1 | 7, _) => Some(0),
            (2 | 3, Some(len)) => {
                let Some(next) = usize::try_from(len).ok().and_then(|l| i.checked_add(l)) else {
                    return Ok(());
                };
                if next > bytes.len() {
                    return Ok(());
                }
                i = next;
                Some(0)
            }
            (4, Some(n)) => Some(n),
            (5, Some(n)) => Some(n.saturating_mul(2)),
            (6, _) => Some(1),
            (_, None) => None,
            _ => return Ok(()),
        };
        match children {
            Some(0) => finish_item(&mut open, &mut depth),
            left => {
                if depth == MAX_DEPTH {
                    return Err(TooDeep);
                }
                open[depth] = left;
                depth += 1;
            }
        }
    }
    Ok(())
}

/// One item of the innermost open container is complete: close the containers it fills.
fn finish_item(open: &mut [Option<u64>; MAX_DEPTH], depth: &mut usize) {
    while *depth > 0 {
        match &mut open[*depth - 1] {
            Some(left) => {
                *left -= 1;
                if *left > 0 {
                    return;
                }
                *depth -= 1;
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_nest(levels: usize) -> String {
        format!(
            "{{\"metadata\":{}1{}}}",
            "[".repeat(levels - 1),
            "]".repeat(levels - 1)
        )
    }

    /// CBOR: a map {"metadata": [[...1...]]} of `levels` levels.
    fn cbor_nest(levels: usize) -> Vec<u8> {
        let mut b = vec![0xa1, 0x68];
        b.extend_from_slice(b"metadata");
        b.extend(std::iter::repeat_n(0x81, levels - 1));
        b.push(0x01);
        b
    }

    #[test]
    fn json_at_the_limit_and_past_it() {
        assert_eq!(check_json(json_nest(MAX_DEPTH).as_bytes()), Ok(()));
        assert_eq!(
            check_json(json_nest(MAX_DEPTH + 1).as_bytes()),
            Err(TooDeep)
        );
        // Brackets inside strings do not count, escaped quotes do not end them.
        let s = format!("{{\"a\":\"\\\"{}\"}}", "[".repeat(500));
        assert_eq!(check_json(s.as_bytes()), Ok(()));
        // Siblings do not add up.
        let wide = format!("[{}1]", "[1],".repeat(500));
        assert_eq!(check_json(wide.as_bytes()), Ok(()));
    }

    #[test]
    fn cbor_at_the_limit_and_past_it() {
        assert_eq!(check_cbor(&cbor_nest(MAX_DEPTH)), Ok(()));
        assert_eq!(check_cbor(&cbor_nest(MAX_DEPTH + 1)), Err(TooDeep));
        // The crash's shape: 4,000 nested arrays.
        assert_eq!(check_cbor(&cbor_nest(4000)), Err(TooDeep));
    }

    #[test]
    fn cbor_tags_and_indefinite_containers_count() {
        // 65 nested tags around an integer.
        let mut tags = vec![0xc6; MAX_DEPTH + 1];
        tags.push(0x01);
        assert_eq!(check_cbor(&tags), Err(TooDeep));
        // 64 nested indefinite arrays, each closed by a break.
        let mut ok = vec![0x9f; MAX_DEPTH];
        ok.extend(std::iter::repeat_n(0xff, MAX_DEPTH));
        assert_eq!(check_cbor(&ok), Ok(()));
        let mut deep = vec![0x9f; MAX_DEPTH + 1];
        deep.extend(std::iter::repeat_n(0xff, MAX_DEPTH + 1));
        assert_eq!(check_cbor(&deep), Err(TooDeep));
    }

    #[test]
    fn cbor_siblings_and_strings_do_not_add_up() {
        // [[1], [1], ... 1000 times]: depth 2.
        let mut b = vec![0x99, 0x03, 0xe8];
        for _ in 0..1000 {
            b.extend_from_slice(&[0x81, 0x01]);
        }
        assert_eq!(check_cbor(&b), Ok(()));
        // A byte string full of 0x81 (array headers) is skipped as data.
        let mut s = vec![0x59, 0x01, 0x00];
        s.extend(std::iter::repeat_n(0x81, 256));
        assert_eq!(check_cbor(&s), Ok(()));
        // A map of maps: each value closes its map.
        let mut m = Vec::new();
        for _ in 0..MAX_DEPTH {
            m.extend_from_slice(&[0xa1, 0x01]);
        }
        m.push(0x02);
        assert_eq!(check_cbor(&m), Ok(()));
        m.insert(0, 0x01);
        m.insert(0, 0xa1);
        assert_eq!(check_cbor(&m), Err(TooDeep));
    }

    #[test]
    fn malformed_cbor_is_left_to_the_decoder() {
        for b in [
            &[0x9f][..],
            &[0xff],
            &[0x5b, 0xff, 0xff],
            &[0x1c],
            &[0x99, 0x01],
        ] {
            assert_eq!(check_cbor(b), Ok(()), "{b:02x?}");
        }
    }
}
