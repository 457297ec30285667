// Compiles the shared precompiled header once (src/core/pch.h); the libraries reuse it.
