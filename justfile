# Everyday commands. Install just with: cargo install just

# Train every variant of an experiment (resumes where an earlier run stopped).
run FILE *ARGS:
    cargo run --release -- run {{FILE}} {{ARGS}}

# Check an experiment file and list its variants.
validate FILE *ARGS:
    cargo run --release -- validate {{FILE}} {{ARGS}}

# Rebuild an experiment's plots, GIFs and pages without retraining.
report DIR:
    cargo run --release -- report {{DIR}}

# One comparison page across several experiment directories.
compare +DIRS:
    cargo run --release -- compare {{DIRS}}

# Predict masks for a folder of images with a trained variant.
predict RUN INPUT OUT *ARGS:
    cargo run --release -- predict --run {{RUN}} --input {{INPUT}} --out {{OUT}} {{ARGS}}

# Training and inference throughput on random data.
bench *ARGS:
    cargo run --release -- bench {{ARGS}}

# The test suite (what CI runs).
test:
    cargo test --release
