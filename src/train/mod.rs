//! The teaching lab's training side: synthetic data with known features, the CPU reference of SAE
//! training, and measures of how well the learned dictionary recovers the true features.

pub mod activations;
pub mod checkpoint;
pub mod gpu_trainer;
pub mod lab;
pub mod lm_train;
pub mod policy;
pub mod recovery;
pub mod sae_train;
pub mod superposition;
pub mod synthetic;
pub mod toy;
pub mod trainer;
