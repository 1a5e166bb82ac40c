//! Links the `composeops` binary as a position-dependent executable on Linux.
//!
//! A position-independent executable is relocated by the dynamic loader at every start: about
//! 47,000 pointers in 1.3 MB of read-only-after-relocation data, each page of it copied on
//! write. Measured on the test machine (2 cores, `perf stat`): `composeops --version` took 520
//! page faults and 3.3 ms of CPU as a PIE, 179 and 1.8 ms without, and a no-op `apply` on 30
//! services 831 and 11.7 ms against 482 and 9.6 ms: a third of a no-op's CPU was the loader's.
//! What is given up is the address randomisation of the executable's own image (the heap,
//! stacks and shared libraries stay randomised), as in Docker's and Compose's Go binaries.
//! Set `COMPOSEOPS_PIE=1` when building to keep a PIE (a distribution's hardening policy).
fn main() {
    println!("cargo:rerun-if-env-changed=COMPOSEOPS_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if linux && std::env::var_os("COMPOSEOPS_PIE").is_none() {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
