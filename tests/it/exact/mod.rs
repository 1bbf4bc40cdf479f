//! Exactness: every fastText fixture against official fastText 0.9.3 (`fasttext_parity`,
//! `fasttext_tree`), every ONNX fixture against Python onnxruntime (`onnx_parity`), answers that
//! do not depend on column order (`reorder`), model sharing (`reuse`), or batching (`scheduler`).

mod cascade;
mod fasttext_parity;
mod fasttext_tree;
mod onnx_parity;
mod reorder;
mod reuse;
mod scheduler;
