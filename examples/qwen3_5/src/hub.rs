//! Finding a model: a local folder or a Hugging Face model id (downloaded and cached).
