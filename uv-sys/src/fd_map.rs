//! `FdMap`: a hash map keyed by descriptor number, with a hasher that is one multiply (std's
//! SipHash costs tens of instructions per lookup, and the I/O path looks descriptors up on
//! every event).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Fibonacci hashing of a descriptor number: multiplying by an odd constant is a bijection on
/// the low bits (the bucket index), so consecutive descriptors never collide there, and it
/// mixes the high bits (the control byte).
#[derive(Default)]
pub struct FdHasher(u64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for FdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(GOLDEN);
        }
    }

    fn write_i32(&mut self, n: i32) {
        self.0 = u64::from(n as u32).wrapping_mul(GOLDEN);
    }
}

pub type FdMap<V> = HashMap<i32, V, BuildHasherDefault<FdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_descriptors_fill_distinct_buckets() {
        let mask = 1023u64;
        let mut seen = std::collections::HashSet::new();
        for fd in 0..1024 {
            let mut h = FdHasher::default();
            h.write_i32(fd);
            assert!(seen.insert(h.finish() & mask), "fd {fd} collides");
        }
    }

    #[test]
    fn map_works_as_a_map() {
        let mut map: FdMap<&str> = FdMap::default();
        map.insert(3, "three");
        map.insert(-1, "none");
        assert_eq!(map.get(&3), Some(&"three"));
        assert_eq!(map.remove(&-1), Some("none"));
        assert_eq!(map.len(), 1);
    }
}
