//! Compiles sensor/v1/*.proto with protox (pure Rust, so a fresh machine
//! needs no protoc), generates prost types, tonic clients and servers, and
//! serde impls in the standard proto3 JSON mapping (pbjson). The encoded
//! descriptor set is kept for gRPC server reflection.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "sensor/v1/events.proto",
        "sensor/v1/sensor.proto",
        "sensor/v1/agents.proto",
        "sensor/v1/response.proto",
        "sensor/v1/baselines.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    let bytes = prost::Message::encode_to_vec(&fds);
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(out.join("sensor_v1_descriptor.bin"), &bytes)?;
    tonic_prost_build::configure()
        .skip_protoc_run()
        // pbjson_types instead of prost_types: the same well-known types,
        // with serde.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;
    pbjson_build::Builder::new()
        .register_descriptors(&bytes)?
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".sensor.v1"])?;
    Ok(())
}
