//! The sensor's gRPC API, generated at build time from `sensor/v1/*.proto`.

pub use pbjson_types;

pub mod v1 {
    // Generated code: its style is the generators', not ours.
    #![allow(clippy::all)]

    tonic::include_proto!("sensor.v1");
    include!(concat!(env!("OUT_DIR"), "/sensor.v1.serde.rs"));

    /// Encoded `FileDescriptorSet` of the API, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("sensor_v1_descriptor");
}
