//! Signed heads, pure: the operator signs the chain's head (its sequence
//! number and hash) with an Ed25519 key that only it may read, and appends
//! the signature as a `signed-head` record. The hash chain alone proves
//! nothing against someone who may rewrite every ConfigMap of the ledger:
//! they can edit a record and recompute every hash after it. They cannot
//! sign. So with the public key, [`check`] proves every record up to the
//! newest signed head that verifies, and names the records after it as
//! unproven.
//!
//! A signature covers one head, but the head's hash covers every record
//! before it (each record names its predecessor's hash): if record N still
//! hashes to what the signature over N says, records 1..N are as signed.
//!
//! Why a record of its own and not a field of the checkpoint: checkpoints
//! happen only at pruning and carry the anchor and memory that pruning
//! needs; signed heads come every hour (and after each pruning, covering its
//! checkpoint). Keeping them apart leaves the checkpoint's meaning and its
//! verification unchanged, and `audit show --action signed-head` lists them.
//!
//! The signed message is domain-separated and versioned, so a signature made
//! for anything else can never pass for a signed head:
//! `cleanroom-audit-head/v1\n<seq>\n<hash>`. The key pair is kept by
//! [`super::keys`].

use std::collections::HashMap;
use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::json;

use super::chain::Segment;
use super::record::{Action, Draft, OPERATOR_ACTOR, Record, hash};

/// The first line of every signed message.
pub const DOMAIN: &str = "cleanroom-audit-head/v1";

/// The ConfigMap name prefix the signed-head records name as their object.
const LEDGER: &str = super::store::PREFIX;

/// The exact bytes signed for the head `seq` whose record hashes to `hash`.
pub fn message(seq: u64, hash: &str) -> String {
    format!("{DOMAIN}\n{seq}\n{hash}")
}

/// The operator's signing key.
pub struct Signer {
    key: SigningKey,
}

/// Shows the public key only: the seed never reaches a log.
impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({})", self.public_hex())
    }
}

impl Signer {
    /// The key of a 32-byte seed (as kept in the Secret).
    pub fn from_seed(seed: &[u8; 32]) -> Signer {
        Signer {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Signer, String> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| format!("no randomness for a key: {e}"))?;
        Ok(Signer::from_seed(&seed))
    }

    /// The seed, for the Secret.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key, hex (64 characters).
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// The record that signs the head `seq` with hash `head`; `why` says
    /// what prompted it (hourly, after pruning, at start).
    pub fn draft(&self, seq: u64, head: &str, why: &str) -> Draft {
        let signature = self.key.sign(message(seq, head).as_bytes());
        Draft {
            actor: OPERATOR_ACTOR.into(),
            kind: "Ledger".into(),
            name: LEDGER.into(),
            uid: String::new(),
            generation: None,
            authorization: None,
            action: Action::SignedHead,
            reason: Some(why.into()),
            before: None,
            after: Some(json!({
                "headSeq": seq,
                "headHash": head,
                "publicKey": self.public_hex(),
                "signature": hex::encode(signature.to_bytes()),
            })),
            key: format!("signed-head/{seq}"),
        }
    }
}

/// A public key as printed by `cleanroom audit pubkey` (hex, surrounding
/// white space ignored).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("a public key is 64 hex digits (32 bytes)")?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

/// What one signed-head record states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHead {
    pub seq: u64,
    pub hash: String,
    pub public_key: String,
    pub signature: String,
}

/// The statement of a `signed-head` record (`None` for any other, or a malformed one).
pub fn signed_head_of(r: &Record) -> Option<SignedHead> {
    if r.action != Action::SignedHead {
        return None;
    }
    let after = r.after.as_ref()?;
    let text = |k: &str| after.get(k)?.as_str().map(str::to_string);
    Some(SignedHead {
        seq: after.get("headSeq")?.as_u64()?,
        hash: text("headHash")?,
        public_key: text("publicKey")?,
        signature: text("signature")?,
    })
}

/// Whether `head`'s signature verifies with `key` (strict: no malleable forms).
fn signature_holds(head: &SignedHead, key: &VerifyingKey) -> Result<(), String> {
    if head.public_key != hex::encode(key.to_bytes()) {
        return Err(format!(
            "it was signed with the public key {}, not the one given",
            head.public_key
        ));
    }
    let signature = hex::decode(&head.signature)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or("its signature is not 64 bytes of hex")?;
    key.verify_strict(message(head.seq, &head.hash).as_bytes(), &signature)
        .map_err(|_| {
            "its signature does not verify: it was not made with the operator's key".to_string()
        })
}

/// Every record that parses, in chain order, with the hash of its line.
pub fn chained(segments: &[Segment]) -> Vec<(Record, String)> {
    super::chain::lines(segments)
        .into_iter()
        .filter_map(|line| Record::parse(line).ok().map(|r| (r, hash(line))))
        .collect()
}

/// The newest signed head that verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Proven {
    /// The `signed-head` record.
    pub record: u64,
    /// Every record up to this one is as signed.
    pub through: u64,
    pub time: Timestamp,
}

/// What the signatures prove of an intact chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Proof {
    /// Signed heads that verified.
    pub signed_heads: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<Proven>,
    /// The first record no signature covers (signed heads themselves aside).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unproven_from: Option<u64>,
    /// How many records no signature covers.
    pub unproven: u64,
}

/// Where the signatures stop proving the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unproven {
    /// The record at fault (a signed head, or an old unsigned record).
    pub record: u64,
    pub problem: String,
    /// The newest signed head before it that verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<Proven>,
    /// Records from here on are not proven.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unproven_from: Option<u64>,
}

impl fmt::Display for Unproven {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}: {}; ", self.record, self.problem)?;
        match &self.last {
            Some(p) => write!(
                f,
                "the last signed head that verifies is record {} (records through {})",
                p.record, p.through
            )?,
            None => write!(f, "no signed head verifies")?,
        }
        match self.unproven_from {
            Some(n) => write!(f, ": records from {n} on are unproven"),
            None => Ok(()),
        }
    }
}

/// The first record after `through` that is not itself a signed head.
fn first_unproven(records: &[(Record, String)], through: u64) -> Option<&Record> {
    records
        .iter()
        .map(|(r, _)| r)
        .find(|r| r.seq > through && r.action != Action::SignedHead)
}

/// The first record that no longer hashes to what its successor names (or
/// after which the sequence jumps): the links hold up to it, not past it.
fn first_unlinked(records: &[(Record, String)]) -> Option<u64> {
    records
        .windows(2)
        .find(|w| w[1].0.prev != w[0].1 || w[1].0.seq != w[0].0.seq + 1)
        .map(|w| w[0].0.seq)
}

/// Checks every signed head of `records` with `key`, on its own (the hash
/// chain's own check, [`super::verify`], names a break more precisely).
/// Fails at the first signature that does not verify or whose records no
/// longer hash as signed, and when a record older
/// than `max_unproven` (as of `now`) is covered by no signature: the
/// operator signs every hour, so the signed heads after it were removed.
pub fn check(
    records: &[(Record, String)],
    key: &VerifyingKey,
    now: Timestamp,
    max_unproven: SignedDuration,
) -> Result<Proof, Unproven> {
    let mut hashes: HashMap<u64, &str> = records.iter().map(|(r, h)| (r.seq, h.as_str())).collect();
    if let Some((first, _)) = records.first() {
        // The chain may start after pruning: its first record names the last pruned one.
        hashes.insert(first.seq.saturating_sub(1), first.prev.as_str());
    }
    let unlinked = first_unlinked(records);
    let mut proof = Proof::default();
    let fail = |record: u64, problem: String, last: &Option<Proven>| Unproven {
        record,
        problem,
        unproven_from: first_unproven(records, last.as_ref().map_or(0, |p| p.through))
            .map(|r| r.seq),
        last: last.clone(),
    };
    for (r, _) in records
        .iter()
        .filter(|(r, _)| r.action == Action::SignedHead)
    {
        let Some(head) = signed_head_of(r) else {
            return Err(fail(r.seq, "a malformed signed head".into(), &proof.last));
        };
        if let Err(problem) = signature_holds(&head, key) {
            return Err(fail(r.seq, problem, &proof.last));
        }
        proof.signed_heads += 1;
        if let Some(k) = unlinked.filter(|k| *k <= head.seq) {
            let problem = format!(
                "record {k} no longer hashes to what the record after it names: records through {} were changed after they were signed",
                head.seq
            );
            return Err(fail(r.seq, problem, &proof.last));
        }
        match hashes.get(&head.seq) {
            Some(h) if *h == head.hash => {
                proof.last = Some(Proven {
                    record: r.seq,
                    through: head.seq,
                    time: r.time.0,
                });
            }
            Some(h) => {
                let problem = format!(
                    "it signs record {} with the hash {}, but that record now hashes to {h}: records through {} were changed after they were signed",
                    head.seq, head.hash, head.seq
                );
                return Err(fail(r.seq, problem, &proof.last));
            }
            // It signs a head that was pruned since: nothing kept to compare.
            None => {}
        }
    }
    finish(records, proof, now, max_unproven)
}

/// Whether the operator may sign the head of `segments`: only an intact
/// chain whose signed heads all hold. Signing a rebuilt chain would vouch
/// for it; an old unsigned tail (the operator was down) is no reason not to.
pub fn may_sign(segments: &[Segment], key: &VerifyingKey) -> Result<(), String> {
    super::chain::verify(super::store::PREFIX, segments)
        .map_err(|b| format!("the chain is broken at {b}"))?;
    check(
        &chained(segments),
        key,
        Timestamp::now(),
        SignedDuration::MAX,
    )
    .map(|_| ())
    .map_err(|u| format!("its signed heads do not hold: {u}"))
}

/// Counts the unproven tail, and fails if it holds a record too old to be unsigned.
fn finish(
    records: &[(Record, String)],
    mut proof: Proof,
    now: Timestamp,
    max_unproven: SignedDuration,
) -> Result<Proof, Unproven> {
    let through = proof.last.as_ref().map_or(0, |p| p.through);
    let Some(oldest) = first_unproven(records, through) else {
        return Ok(proof);
    };
    proof.unproven_from = Some(oldest.seq);
    proof.unproven = records
        .iter()
        .filter(|(r, _)| r.seq > through && r.action != Action::SignedHead)
        .count() as u64;
    if now.duration_since(oldest.time.0) > max_unproven {
        return Err(Unproven {
            record: oldest.seq,
            problem: format!(
                "written at {} and no signed head covers it, though the operator signs every hour: the signed heads after it were removed, or the operator has not run since",
                oldest.time.0
            ),
            last: proof.last,
            unproven_from: Some(oldest.seq),
        });
    }
    Ok(proof)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::{Form, piece_name, verify};
    use crate::audit::record::{GENESIS, data_key};

    const PREFIX: &str = "cleanroom-audit";

    fn at(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn event(i: u64) -> Draft {
        Draft {
            actor: "alice".into(),
            kind: "Scenario".into(),
            name: format!("s{i}"),
            uid: format!("u{i}"),
            generation: Some(1),
            authorization: Some("acme".into()),
            action: Action::Suspended,
            reason: Some(format!("finding {i}")),
            before: None,
            after: None,
            key: format!("u{i}/suspended"),
        }
    }

    /// A ledger being written: its lines, in order.
    #[derive(Default)]
    struct Lines(Vec<String>);

    impl Lines {
        fn head(&self) -> (u64, String) {
            (
                self.0.len() as u64,
                self.0.last().map_or(GENESIS.to_string(), |l| hash(l)),
            )
        }
        fn push(&mut self, draft: Draft, time: &str) {
            let (seq, head) = self.head();
            self.0
                .push(Record::new(draft, seq + 1, at(time), &head).line());
        }
        fn events(&mut self, from: u64, to: u64, time: &str) {
            for i in from..=to {
                self.push(event(i), time);
            }
        }
        fn sign(&mut self, signer: &Signer, time: &str) {
            let (seq, head) = self.head();
            self.push(signer.draft(seq, &head, "hourly"), time);
        }
        /// Segments of `per` records, each with its prev and head.
        fn segments(&self, per: usize) -> Vec<Segment> {
            let mut prev = GENESIS.to_string();
            let mut out = Vec::new();
            for (i, chunk) in self.0.chunks(per).enumerate() {
                let first = (i * per) as u64 + 1;
                let entries: Vec<(String, String)> = chunk
                    .iter()
                    .enumerate()
                    .map(|(j, l)| (data_key(first + j as u64), l.clone()))
                    .collect();
                let head = chunk.last().map(|l| hash(l));
                out.push(Segment {
                    name: piece_name(PREFIX, Form::Batch, first),
                    form: Form::Batch,
                    first,
                    prev: prev.clone(),
                    head: head.clone(),
                    sealed: false,
                    entries,
                });
                prev = head.unwrap_or(prev);
            }
            out
        }
        /// What someone who may write every ConfigMap but lacks the key can
        /// do: edit record `seq` and recompute every hash after it.
        fn rewrite(&self, seq: u64, from: &str, to: &str) -> Lines {
            let mut out = Lines::default();
            for (i, line) in self.0.iter().enumerate() {
                let mut r = Record::parse(line).expect("record");
                if i as u64 + 1 == seq {
                    r = Record::parse(&line.replace(from, to)).expect("edited");
                }
                r.prev = out.head().1;
                out.0.push(r.line());
            }
            out
        }
    }

    fn signer(byte: u8) -> Signer {
        Signer::from_seed(&[byte; 32])
    }

    const NOW: &str = "2026-03-01T10:30:00Z";
    const HOURS_2: SignedDuration = SignedDuration::from_hours(2);

    /// Records 1-3, signed head 4, records 5-7, signed head 8, records 9-10.
    fn signed_ledger(key: &Signer) -> Lines {
        let mut l = Lines::default();
        l.events(1, 3, "2026-03-01T08:00:00Z");
        l.sign(key, "2026-03-01T08:30:00Z");
        l.events(5, 7, "2026-03-01T09:00:00Z");
        l.sign(key, "2026-03-01T09:30:00Z");
        l.events(9, 10, "2026-03-01T10:00:00Z");
        l
    }

    fn check_lines(l: &Lines, key: &Signer) -> Result<Proof, Unproven> {
        let segments = l.segments(4);
        verify(PREFIX, &segments).expect("the hash chain holds");
        let public = parse_public_key(&key.public_hex()).expect("key");
        check(&chained(&segments), &public, at(NOW), HOURS_2)
    }

    #[test]
    fn the_signed_message_is_domain_separated_and_the_key_round_trips() {
        assert_eq!(message(7, "ab"), "cleanroom-audit-head/v1\n7\nab");
        let k = signer(1);
        assert_eq!(k.public_hex().len(), 64);
        assert_eq!(Signer::from_seed(&k.seed()).public_hex(), k.public_hex());
        let public = parse_public_key(&format!(" {}\n", k.public_hex())).expect("parses");
        assert_eq!(hex::encode(public.to_bytes()), k.public_hex());
        assert!(parse_public_key("abc").is_err());
        assert_ne!(
            Signer::generate().expect("random").public_hex(),
            Signer::generate().expect("random").public_hex()
        );
    }

    #[test]
    fn a_valid_signed_chain_passes_and_its_unsigned_tail_is_reported() {
        let key = signer(1);
        let p = check_lines(&signed_ledger(&key), &key).expect("proven");
        assert_eq!(p.signed_heads, 2);
        let last = p.last.expect("a signed head");
        assert_eq!((last.record, last.through), (8, 7));
        assert_eq!((p.unproven_from, p.unproven), (Some(9), 2));
        // Signed at the very end: nothing unproven.
        let mut l = signed_ledger(&key);
        l.sign(&key, "2026-03-01T10:10:00Z");
        let p = check_lines(&l, &key).expect("proven");
        assert_eq!((p.unproven_from, p.unproven), (None, 0));
    }

    #[test]
    fn a_record_edited_after_its_signed_head_fails() {
        let key = signer(1);
        let mut segments = signed_ledger(&key).segments(20);
        let edited = segments[0].entries[5].1.replace("finding 6", "finding 0");
        segments[0].entries[5].1 = edited;
        let public = parse_public_key(&key.public_hex()).expect("key");
        let u = check(&chained(&segments), &public, at(NOW), HOURS_2).expect_err("edited");
        // (The hash chain catches this one too; the signatures do on their own.)
        assert_eq!(u.record, 8, "{u}");
        assert!(u.problem.contains("changed after they were signed"), "{u}");
        assert_eq!(u.last.as_ref().map(|p| p.through), Some(3), "{u}");
        assert_eq!(u.unproven_from, Some(5), "{u}");
    }

    #[test]
    fn a_chain_rebuilt_and_rehashed_without_the_key_fails_naming_the_first_unproven_record() {
        let key = signer(1);
        let forged = signed_ledger(&key).rewrite(6, "finding 6", "nothing found");
        // The hash chain alone cannot tell.
        let u = check_lines(&forged, &key).expect_err("rebuilt");
        assert_eq!(u.record, 8, "{u}");
        assert_eq!(u.last.as_ref().map(|p| (p.record, p.through)), Some((4, 3)));
        assert_eq!(u.unproven_from, Some(5), "{u}");
        assert!(
            u.to_string().contains("records from 5 on are unproven"),
            "{u}"
        );
        // Re-signed by the forger with a key of their own, under their key...
        let mut l = Lines::default();
        l.events(1, 3, "2026-03-01T08:00:00Z");
        l.sign(&signer(2), "2026-03-01T08:30:00Z");
        let u = check_lines(&l, &key).expect_err("another key");
        assert!(u.problem.contains("not the one given"), "{u}");
        // ...or claiming the operator's.
        let lie = l.rewrite(4, &signer(2).public_hex(), &key.public_hex());
        let u = check_lines(&lie, &key).expect_err("forged signature");
        assert!(u.problem.contains("does not verify"), "{u}");
        assert_eq!((u.record, u.last, u.unproven_from), (4, None, Some(1)));
    }

    #[test]
    fn the_operator_signs_only_a_chain_whose_hashes_and_signatures_hold() {
        let key = signer(1);
        let public = key.verifying_key();
        // Old unsigned records (it was down): still signed.
        let mut l = Lines::default();
        l.events(1, 3, "2020-01-01T00:00:00Z");
        assert_eq!(may_sign(&l.segments(4), &public), Ok(()));
        // Rebuilt after a signed head: never vouched for.
        let forged = signed_ledger(&key).rewrite(6, "finding 6", "nothing found");
        let why = may_sign(&forged.segments(4), &public).expect_err("rebuilt");
        assert!(why.contains("signed heads do not hold"), "{why}");
        // A broken hash chain neither.
        let mut segments = signed_ledger(&key).segments(4);
        segments[1].entries[0].1 = segments[1].entries[0].1.replace("finding 5", "x");
        let why = may_sign(&segments, &public).expect_err("broken");
        assert!(why.contains("broken"), "{why}");
    }

    #[test]
    fn old_records_without_a_signed_head_fail_and_recent_ones_are_only_unproven() {
        let key = signer(1);
        let mut l = Lines::default();
        l.events(1, 3, "2026-03-01T08:00:00Z");
        // Its signed heads removed (or never made): older than two hours.
        let u = check_lines(&l, &key).expect_err("too old unsigned");
        assert!(u.problem.contains("no signed head covers it"), "{u}");
        assert_eq!((u.record, u.last, u.unproven_from), (1, None, Some(1)));
        let mut recent = Lines::default();
        recent.events(1, 3, "2026-03-01T09:00:00Z");
        let p = check_lines(&recent, &key).expect("recent");
        assert_eq!(
            (p.signed_heads, p.unproven_from, p.unproven),
            (0, Some(1), 3)
        );
    }
}
