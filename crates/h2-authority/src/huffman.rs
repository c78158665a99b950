//! HPACK Huffman decoding (RFC 7541 section 5.2 and Appendix B).
//!
//! The RFC's code is canonical: code words are assigned in increasing order
//! of (bit length, symbol). That lets us decode with three small per-length
//! tables instead of a tree or a generated state machine: for every bit
//! length `L`, the first code word of that length, how many code words have
//! that length, and where their symbols start in a list of symbols sorted by
//! code. The tables are computed at compile time from [`CODES`].

use crate::huffman_table::CODES;

/// The longest code word (EOS) is 30 bits.
const MAX_LEN: usize = 30;
/// The shortest code word is 5 bits.
const MIN_LEN: usize = 5;
/// Symbol number of EOS.
const EOS: u16 = 256;

struct Canonical {
    /// First code word of each bit length.
    first: [u32; MAX_LEN + 1],
    /// Number of code words of each bit length.
    count: [u32; MAX_LEN + 1],
    /// Index into `symbols` of the first symbol of each bit length.
    offset: [u16; MAX_LEN + 1],
    /// Symbols sorted by (length, code).
    symbols: [u16; 257],
}

const fn build() -> Canonical {
    let mut c = Canonical {
        first: [0; MAX_LEN + 1],
        count: [0; MAX_LEN + 1],
        offset: [0; MAX_LEN + 1],
        symbols: [0; 257],
    };
    // Sort symbols by (length, code) with a compile-time insertion sort.
    let mut i = 0;
    while i < 257 {
        c.symbols[i] = i as u16;
        i += 1;
    }
    i = 1;
    while i < 257 {
        let mut j = i;
        while j > 0 {
            let (ca, la) = CODES[c.symbols[j - 1] as usize];
            let (cb, lb) = CODES[c.symbols[j] as usize];
            if la > lb || (la == lb && ca > cb) {
                let t = c.symbols[j - 1];
                c.symbols[j - 1] = c.symbols[j];
                c.symbols[j] = t;
                j -= 1;
            } else {
                break;
            }
        }
        i += 1;
    }
    i = 0;
    while i < 257 {
        let (code, len) = CODES[c.symbols[i] as usize];
        let len = len as usize;
        if c.count[len] == 0 {
            c.first[len] = code;
            c.offset[len] = i as u16;
        }
        // Canonical property: code words of one length are consecutive.
        assert!(code == c.first[len] + c.count[len]);
        c.count[len] += 1;
        i += 1;
    }
    c
}

static CANON: Canonical = build();

/// Errors from Huffman decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HuffmanError {
    /// The EOS symbol appeared in the string.
    #[error("EOS symbol inside a Huffman string")]
    Eos,
    /// Padding longer than 7 bits or not a prefix of EOS.
    #[error("invalid Huffman padding")]
    Padding,
}

/// Appends the decoding of the Huffman string `src` to `dst`.
pub(crate) fn decode(src: &[u8], dst: &mut Vec<u8>) -> Result<(), HuffmanError> {
    dst.reserve(src.len() + src.len() / 2);
    let canon = &CANON;
    // Bits are kept MSB-aligned in `acc`; `nbits` of them are valid.
    let mut acc: u64 = 0;
    let mut nbits: usize = 0;
    let mut input = src.iter();
    loop {
        while nbits <= 56 {
            match input.next() {
                Some(&b) => {
                    acc |= u64::from(b) << (56 - nbits);
                    nbits += 8;
                }
                None => break,
            }
        }
        if nbits < MIN_LEN {
            break;
        }
        let mut matched = false;
        let mut len = MIN_LEN;
        let max = nbits.min(MAX_LEN);
        while len <= max {
            let code = (acc >> (64 - len)) as u32;
            let rel = code.wrapping_sub(canon.first[len]);
            if rel < canon.count[len] {
                let sym = canon.symbols[(canon.offset[len] as u32 + rel) as usize];
                if sym == EOS {
                    return Err(HuffmanError::Eos);
                }
                dst.push(sym as u8);
                acc <<= len;
                nbits -= len;
                matched = true;
                break;
            }
            len += 1;
        }
        if !matched {
            // Only the trailing padding is left (input is exhausted, since
            // with >= 30 bits some code word always matches).
            break;
        }
    }
    // Remaining bits must be fewer than 8 and all ones (a prefix of EOS).
    if nbits > 7 {
        return Err(HuffmanError::Padding);
    }
    if nbits > 0 {
        let mask = !0u64 << (64 - nbits);
        if acc & mask != mask {
            return Err(HuffmanError::Padding);
        }
    }
    Ok(())
}

/// Huffman-encodes `src` (used by tests and the test client only).
#[cfg(test)]
pub(crate) fn encode(src: &[u8], dst: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut nbits = 0;
    for &b in src {
        let (code, len) = CODES[b as usize];
        acc = (acc << len) | u64::from(code);
        nbits += len as usize;
        while nbits >= 8 {
            nbits -= 8;
            dst.push((acc >> nbits) as u8);
        }
    }
    if nbits > 0 {
        let pad = 8 - nbits;
        dst.push(((acc << pad) as u8) | ((1u8 << pad) - 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_tables_cover_every_symbol() {
        let total: u32 = CANON.count.iter().sum();
        assert_eq!(total, 257);
        assert_eq!(CANON.count[..MIN_LEN].iter().sum::<u32>(), 0);
    }

    #[test]
    fn round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        let mut enc = Vec::new();
        encode(&all, &mut enc);
        let mut dec = Vec::new();
        decode(&enc, &mut dec).unwrap();
        assert_eq!(dec, all);
        for b in 0..=255u8 {
            let mut enc = Vec::new();
            encode(&[b, b, b], &mut enc);
            let mut dec = Vec::new();
            decode(&enc, &mut dec).unwrap();
            assert_eq!(dec, [b, b, b]);
        }
    }

    #[test]
    fn rfc7541_c4_examples() {
        // RFC 7541 C.4.1: "www.example.com"
        let enc = [
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ];
        let mut dec = Vec::new();
        decode(&enc, &mut dec).unwrap();
        assert_eq!(dec, b"www.example.com");
        // C.4.2: "no-cache"
        let mut dec = Vec::new();
        decode(&[0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf], &mut dec).unwrap();
        assert_eq!(dec, b"no-cache");
    }

    #[test]
    fn rejects_bad_padding_and_eos() {
        let mut dec = Vec::new();
        // 'a' is 00011 (5 bits); pad with zeros instead of ones.
        assert_eq!(decode(&[0b0001_1000], &mut dec), Err(HuffmanError::Padding));
        // A full byte of ones is padding longer than 7 bits.
        let mut enc = Vec::new();
        encode(b"a", &mut enc);
        enc.push(0xff);
        assert_eq!(decode(&enc, &mut dec), Err(HuffmanError::Padding));
        // EOS: 30 ones.
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xfc], &mut dec),
            Err(HuffmanError::Eos)
        );
        // Empty string is fine.
        assert_eq!(decode(&[], &mut dec), Ok(()));
    }
}
