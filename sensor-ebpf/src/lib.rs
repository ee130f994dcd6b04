#![no_std]
// Intentionally empty: the programs live in the `sensor-ebpf` binary.
