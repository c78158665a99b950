//! Compiles `proto/` with protox (pure Rust, no protoc) into prost types, tonic
//! client/server stubs and a descriptor set for reflection and JSON.

use std::path::PathBuf;

use prost::Message;

const FILES: &[&str] = &[
    "coprocess_common.proto",
    "coprocess_mini_request_object.proto",
    "coprocess_object.proto",
    "coprocess_response_object.proto",
    "coprocess_return_overrides.proto",
    "coprocess_session_state.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    println!("cargo:rerun-if-changed={}", proto_dir.display());

    let mut compiler = protox::Compiler::new([&proto_dir])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(FILES)?;
    let fds = compiler.file_descriptor_set();

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // compile_fds does not write the descriptor set itself.
    std::fs::write(
        out_dir.join("coprocess_descriptor.bin"),
        fds.encode_to_vec(),
    )?;

    let mut config = prost_build::Config::new();
    config
        .btree_map(["."])
        .bytes([
            ".coprocess.MiniRequestObject.raw_body",
            ".coprocess.ResponseObject.raw_body",
        ])
        .type_attribute(".", "#[allow(clippy::all, missing_docs)]");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
