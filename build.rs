//! Build script: exposes the target Python's version as `cfg`s (`Py_3_11`, ...) so that code can
//! use C API functions only the newer versions have.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
