//! The only code that talks to the kernel (stub; being written).
