//! berthctl (being written)
