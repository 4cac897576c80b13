"""Running a model: the provider seam (`provider`), the local llama.cpp runtime (`runtime`) in
its own process (`host`), and the prompt formats local models need (`templates`)."""
