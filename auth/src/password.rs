//! Password hashing with argon2id. Hashes are PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`)
//! that carry their own parameters, so raising the cost later still verifies older hashes.
//! Both hashing and verifying are CPU-heavy on purpose and run on tokio's blocking pool.

use argon2::password_hash::{Error as PhcError, PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::{Error, Result};

/// The shortest password accepted, in characters.
pub const MIN_PASSWORD_LEN: usize = 8;
/// The longest password accepted, in characters (longer ones would only make hashing
/// slower). Characters, not bytes, so that the API's document (JSON Schema counts
/// characters) says exactly what is accepted.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// The cost of argon2id: memory in KiB, iterations and lanes. Built only by [`Default`]
/// (OWASP's recommendation: 19 MiB, 2 iterations, 1 lane), [`PasswordParams::new`] (checked)
/// or [`PasswordParams::insecure_fast`] (tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordParams(Params);

impl PasswordParams {
    /// argon2id with `memory_kib` KiB of memory, `iterations` passes and `parallelism` lanes;
    /// `Error::Invalid` when argon2 refuses them (e.g. memory below 8 KiB per lane).
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self> {
        Params::new(memory_kib, iterations, parallelism, None)
            .map(PasswordParams)
            .map_err(|e| Error::invalid("password hashing parameters", e.to_string()))
    }

    /// The cheapest parameters argon2 allows (8 KiB, 1 iteration). For tests only: a hash made
    /// with them is easy to brute-force.
    pub fn insecure_fast() -> Self {
        PasswordParams(
            Params::new(
                Params::MIN_M_COST,
                Params::MIN_T_COST,
                Params::MIN_P_COST,
                None,
            )
            .unwrap_or_default(),
        )
    }

    /// Memory cost in KiB.
    pub fn memory_kib(&self) -> u32 {
        self.0.m_cost()
    }

    /// Number of passes over the memory.
    pub fn iterations(&self) -> u32 {
        self.0.t_cost()
    }

    /// Number of lanes.
    pub fn parallelism(&self) -> u32 {
        self.0.p_cost()
    }

    fn hasher(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.0.clone())
    }
}

impl Default for PasswordParams {
    /// m = 19456 KiB, t = 2, p = 1.
    fn default() -> Self {
        PasswordParams(Params::DEFAULT)
    }
}

/// `Error::Invalid` unless `password` is 8 to 1024 characters long. The message never
/// contains it.
pub(crate) fn check_password(password: &str) -> Result<()> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        return Err(Error::invalid(
            "password",
            format!("must be at least {MIN_PASSWORD_LEN} characters long"),
        ));
    }
    if len > MAX_PASSWORD_LEN {
        return Err(Error::invalid(
            "password",
            format!("must be at most {MAX_PASSWORD_LEN} characters long"),
        ));
    }
    Ok(())
}

/// Hashes `password` with a fresh random salt (blocking; call from [`hash`] or a blocking task).
pub(crate) fn hash_blocking(params: &PasswordParams, password: &[u8]) -> Result<String> {
    params
        .hasher()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("could not hash a password: {e}")))
}

/// Whether `password` matches the PHC string `phc` (blocking). A malformed stored hash is
/// logged and counts as a mismatch, so that it cannot be told apart from a wrong password.
pub(crate) fn verify_blocking(password: &[u8], phc: &str) -> bool {
    // The parameters come from the PHC string itself, not from this hasher.
    match Argon2::default().verify_password(password, phc) {
        Ok(()) => true,
        Err(PhcError::PasswordInvalid) => false,
        Err(e) => {
            tracing::warn!("a stored password hash could not be checked: {e}");
            false
        }
    }
}

/// [`hash_blocking`] on tokio's blocking pool, after [`check_password`].
pub(crate) async fn hash(params: &PasswordParams, password: &str) -> Result<String> {
    check_password(password)?;
    let params = params.clone();
    let password = password.as_bytes().to_vec();
    blocking(move || hash_blocking(&params, &password)).await?
}

/// Runs CPU-heavy work on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("a password hashing task failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_phc_strings_that_verify() {
        let params = PasswordParams::insecure_fast();
        let phc = hash_blocking(&params, b"correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert!(verify_blocking(b"correct horse", &phc));
        assert!(!verify_blocking(b"correct horsf", &phc));
        assert!(!verify_blocking(b"correct horse", "not a phc string"));
        let again = hash_blocking(&params, b"correct horse").unwrap();
        assert_ne!(phc, again, "each hash has its own salt");
    }

    #[test]
    fn default_params_are_owasp() {
        let p = PasswordParams::default();
        assert_eq!(
            (p.memory_kib(), p.iterations(), p.parallelism()),
            (19_456, 2, 1)
        );
        assert!(PasswordParams::new(1, 1, 1).is_err());
        assert_eq!(
            PasswordParams::new(8, 1, 1).unwrap(),
            PasswordParams::insecure_fast()
        );
    }

    #[test]
    fn length_limits() {
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
        assert!(check_password(&"x".repeat(1024)).is_ok());
        let err = check_password(&"x".repeat(1025)).unwrap_err();
        assert!(!err.to_string().contains("xxxx"));
    }
}
