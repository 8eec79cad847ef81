//! The shared library's soname: `libhdpflush.so.0`, so programs linked against one ABI version
//! keep loading it after a compatible update (`cargo xtask install` makes the symlinks).

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libhdpflush.so.0");
}
