//! The log buses behind [`platform::bus::LogBus`]: [`InProcessBus`], a channel inside one process
//! (`cloudrunr serve`), and [`KafkaBus`], for a platform spread over several processes.
//!
//! Its own crate so that only the components that open a bus compile librdkafka.

mod in_process;
mod kafka;
#[cfg(test)]
mod tests;

pub use in_process::InProcessBus;
pub use kafka::KafkaBus;
pub use platform::settings::KafkaConfig;
