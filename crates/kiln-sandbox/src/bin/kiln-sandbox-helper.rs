//! A stand-alone sandbox helper binary, so the crate's tests (and embedders
//! without their own dispatch) have an executable to re-exec.

fn main() {
    kiln_sandbox::helper_main()
}
