//! Random bytes for data keys, IVs and message ids, from the operating system's CSPRNG.
//!
//! Not aws-lc's `RAND_bytes`: its first call in a process seeds a DRBG from CPU jitter, which cost
//! about 80 ms of CPU here, most of the run time of a small `envelope encrypt` and a serial step in
//! front of every parallel one.

use crate::error::{Error, Result};

/// Fills `buf` with random bytes.
pub(crate) fn fill(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|_| Error::Crypto)
}
