//! Black-box tests of Keyroll live in `tests/`: they spawn the application on port 0 with its
//! own database and talk to it over real sockets.

pub mod layers;
