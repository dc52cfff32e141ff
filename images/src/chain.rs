//! Chain IDs: the identity of a layer *together with everything below it*.
//!
//! A layer's diff ID (sha256 of its uncompressed tar) says what the layer
//! contains; the chain ID says what the filesystem looks like once it and all
//! its parents are applied, so it is the right key for a snapshot. As in the
//! OCI image spec:
//!
//! ```text
//! ChainID(L0)      = DiffID(L0)
//! ChainID(L0..Ln)  = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))
//! ```
//!
//! (both digests written in full, `sha256:<hex>`).

use crate::digest::Digest;

/// Chain IDs of `diff_ids` (bottom layer first), one per layer.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chain: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(hex: &str) -> Digest {
        Digest::parse(&format!("sha256:{hex}")).unwrap()
    }

    #[test]
    fn matches_known_values() {
        // diff IDs are sha256("a"), sha256("b"), sha256("c"); the expected
        // chain IDs were computed independently with coreutils' sha256sum.
        let diffs = [Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"c")];
        assert_eq!(
            diffs[0],
            d("ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb")
        );
        let chain = chain_ids(&diffs);
        assert_eq!(chain[0], diffs[0]);
        assert_eq!(
            chain[1],
            d("51c0c8ace48498d6f5fee6b0592cc06f2da0f3cbe09c5a34a97dce85c3889676")
        );
        assert_eq!(
            chain[2],
            d("2fce7f8ce91bcf0a1428b36e1024639fdbd9469eea762dba98aa749631885106")
        );
    }

    #[test]
    fn shared_base_shares_chain_prefix() {
        let base = Digest::of(b"base");
        let a = chain_ids(&[base.clone(), Digest::of(b"a")]);
        let b = chain_ids(&[base.clone(), Digest::of(b"b")]);
        assert_eq!(a[0], b[0]);
        assert_ne!(a[1], b[1]);
        assert!(chain_ids(&[]).is_empty());
    }
}
