//! Compiles `moralsweep.proto` with a vendored `protoc`, so a build needs no
//! system protobuf compiler.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY-free: build scripts are single threaded.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure().compile_protos(&["moralsweep.proto"], &["."])?;
    println!("cargo:rerun-if-changed=moralsweep.proto");
    Ok(())
}
