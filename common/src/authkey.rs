//! The cluster key file and the keys derived from it.
//!
//! Spec: MEMBERSHIP-NOTES.md section 7. Corosync's authkey is raw random bytes
//! (128 to 4096 bytes, made by corosync-keygen); halo reads the same kind of
//! file, accepting 32 to 4096 bytes, and never uses it directly: the totem
//! packet key is derived with HKDF-SHA256 (RFC 5869, the `hkdf` crate; no
//! salt, info [`PACKET_KEY_INFO`]). A short key id, derived the same way with
//! another info string, lets packets name the key they were sealed with so a
//! key can be rotated at runtime.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hkdf::Hkdf;
use sha2::Sha256;

/// Shortest key file accepted, in bytes.
pub const MIN_AUTHKEY_BYTES: usize = 32;
/// Longest key file accepted, in bytes (Corosync's upper bound).
pub const MAX_AUTHKEY_BYTES: usize = 4096;
/// Size of a key made by [`generate_authkey`].
pub const GENERATED_AUTHKEY_BYTES: usize = 256;
/// HKDF info string of the totem packet key.
pub const PACKET_KEY_INFO: &[u8] = b"halo totem v1";
/// HKDF info string of the key id.
pub const KEY_ID_INFO: &[u8] = b"halo key id v1";

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthKeyError {
    #[error("cannot read cluster key {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cluster key {what} is {len} bytes, fewer than the {min} required; generate a new key (256 random bytes)")]
    TooShort { what: String, len: usize, min: usize },
    #[error("cluster key {what} is more than {max} bytes; is this the right file?")]
    TooLong { what: String, max: usize },
    #[error("cluster key {path} already exists; remove it first to replace the key")]
    Exists { path: PathBuf },
    #[error("cannot write cluster key {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("cannot read random bytes from /dev/urandom: {message}")]
    Random { message: String },
}

/// The shared cluster key. Its bytes never appear in `Debug` output and are
/// overwritten when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey {
    bytes: Vec<u8>,
}

impl std::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthKey({} bytes, id {:08x})", self.bytes.len(), self.key_id())
    }
}

impl Drop for AuthKey {
    fn drop(&mut self) {
        for b in self.bytes.iter_mut() {
            // SAFETY: `b` is a valid, exclusive reference to a byte we own.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl AuthKey {
    /// A key from bytes already in memory (same size rules as a key file).
    pub fn from_bytes(bytes: &[u8]) -> Result<AuthKey, AuthKeyError> {
        check_len("(in memory)", bytes.len())?;
        Ok(AuthKey { bytes: bytes.to_vec() })
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The 32-byte key that seals totem packets: HKDF-SHA256(key, info "halo totem v1").
    pub fn packet_key(&self) -> [u8; 32] {
        self.derive(PACKET_KEY_INFO)
    }

    /// A 32-bit id of this key, carried in packet headers to select the key.
    pub fn key_id(&self) -> u32 {
        let k = self.derive(KEY_ID_INFO);
        u32::from_be_bytes([k[0], k[1], k[2], k[3]])
    }

    fn derive(&self, info: &[u8]) -> [u8; 32] {
        let hk = Hkdf::<Sha256>::new(None, &self.bytes);
        let mut okm = [0u8; 32];
        hk.expand(info, &mut okm)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        okm
    }
}

fn check_len(what: &str, len: usize) -> Result<(), AuthKeyError> {
    if len < MIN_AUTHKEY_BYTES {
        return Err(AuthKeyError::TooShort { what: what.to_string(), len, min: MIN_AUTHKEY_BYTES });
    }
    if len > MAX_AUTHKEY_BYTES {
        return Err(AuthKeyError::TooLong { what: what.to_string(), max: MAX_AUTHKEY_BYTES });
    }
    Ok(())
}

/// Read a cluster key file (Corosync's format: raw bytes).
pub fn read_authkey(path: &Path) -> Result<AuthKey, AuthKeyError> {
    let read_err = |e: std::io::Error| AuthKeyError::Read { path: path.to_path_buf(), message: e.to_string() };
    let file = File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    // One byte more than allowed tells "too long" apart without reading a huge file.
    file.take(MAX_AUTHKEY_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    let checked = check_len(&path.display().to_string(), bytes.len());
    let key = AuthKey { bytes };
    checked.map(|()| key)
}

/// Write a new key of [`GENERATED_AUTHKEY_BYTES`] random bytes (from
/// /dev/urandom) to `path` with mode 0600. Refuses to replace an existing
/// file; on any failure nothing is left behind.
pub fn generate_authkey(path: &Path) -> Result<(), AuthKeyError> {
    let mut random = [0u8; GENERATED_AUTHKEY_BYTES];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|e| AuthKeyError::Random { message: e.to_string() })?;
    let key = AuthKey { bytes: random.to_vec() };
    random.fill(0);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                AuthKeyError::Exists { path: path.to_path_buf() }
            } else {
                AuthKeyError::Write { path: path.to_path_buf(), message: e.to_string() }
            }
        })?;
    let written = file
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(&key.bytes))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(AuthKeyError::Write { path: path.to_path_buf(), message: e.to_string() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("halo-common-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn generate_then_read() {
        let dir = tempdir("keygen");
        let path = dir.join("authkey");
        generate_authkey(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), GENERATED_AUTHKEY_BYTES as u64);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let key = read_authkey(&path).unwrap();
        assert_eq!(key.len(), GENERATED_AUTHKEY_BYTES);
        // A second generation refuses to replace the key and leaves it as it was.
        let err = generate_authkey(&path).unwrap_err();
        assert_eq!(err, AuthKeyError::Exists { path: path.clone() });
        assert_eq!(read_authkey(&path).unwrap(), key);
        // Two generated keys differ.
        let other = dir.join("authkey2");
        generate_authkey(&other).unwrap();
        assert_ne!(read_authkey(&other).unwrap().packet_key(), key.packet_key());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn short_long_and_missing_keys_are_refused_with_the_path() {
        let dir = tempdir("keylen");
        let short = dir.join("short");
        std::fs::write(&short, [7u8; 31]).unwrap();
        let err = read_authkey(&short).unwrap_err();
        assert!(matches!(err, AuthKeyError::TooShort { len: 31, min: 32, .. }));
        assert!(err.to_string().contains(&short.display().to_string()), "{err}");
        let ok = dir.join("ok");
        std::fs::write(&ok, [7u8; 32]).unwrap();
        assert_eq!(read_authkey(&ok).unwrap().len(), 32);
        let long = dir.join("long");
        std::fs::write(&long, vec![7u8; MAX_AUTHKEY_BYTES + 1]).unwrap();
        assert!(matches!(read_authkey(&long).unwrap_err(), AuthKeyError::TooLong { .. }));
        let missing = dir.join("missing");
        let err = read_authkey(&missing).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn packet_key_is_hkdf_sha256_with_halo_info() {
        // Same input key, same derived key; different input, different key;
        // the packet key is neither the raw key nor the key-id derivation.
        let a = AuthKey::from_bytes(&[1u8; 64]).unwrap();
        let b = AuthKey::from_bytes(&[1u8; 64]).unwrap();
        let c = AuthKey::from_bytes(&[2u8; 64]).unwrap();
        assert_eq!(a.packet_key(), b.packet_key());
        assert_ne!(a.packet_key(), c.packet_key());
        assert_ne!(&a.packet_key()[..], &[1u8; 32][..]);
        assert_ne!(a.key_id(), c.key_id());
        // Cross-check against HKDF used directly (RFC 5869 extract+expand).
        let hk = Hkdf::<Sha256>::new(None, &[1u8; 64]);
        let mut okm = [0u8; 32];
        hk.expand(b"halo totem v1", &mut okm).unwrap();
        assert_eq!(a.packet_key(), okm);
        assert!(!format!("{a:?}").contains("1, 1"), "Debug must not show key bytes");
    }

    #[test]
    fn hkdf_matches_rfc5869_test_case_1() {
        // RFC 5869 A.1: guards against a wrong hash or a swapped salt/ikm.
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0x00u8..=0x0c).collect();
        let info: Vec<u8> = (0xf0u8..=0xf9).collect();
        let hk = Hkdf::<Sha256>::new(Some(&salt), &ikm);
        let mut okm = [0u8; 42];
        hk.expand(&info, &mut okm).unwrap();
        let hex: String = okm.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }
}
