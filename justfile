# Everyday commands. Install just with: cargo install just

# Train every variant of an experiment (resumes where an earlier run stopped).
run FILE *ARGS:
    cargo run --release -- run {{FILE}} {{ARGS}}

# Check an experiment file and list its variants.
validate FILE *ARGS:
    cargo run --release -- validate {{FILE}} {{ARGS}}

# Rebuild an experiment's plots, GIFs and pages without retraining.
report DIR *ARGS:
    cargo run --release -- report {{DIR}} {{ARGS}}

# The study's tasks (one per variant × seed × fold).
tasks FILE *ARGS:
    cargo run --release -- tasks {{FILE}} {{ARGS}}

# Where a study stands, and the command that finishes it.
status DIR *ARGS:
    cargo run --release -- status {{DIR}} {{ARGS}}

# The runs table: one line per variant (--sort COL, --json, --csv).
runs DIR *ARGS:
    cargo run --release -- runs {{DIR}} {{ARGS}}

# Push a study to an MLflow tracking server (--uri URI, else MLFLOW_TRACKING_URI).
mlflow-sync DIR *ARGS:
    cargo run --release -- mlflow-sync {{DIR}} {{ARGS}}

# Serve study pages read-only on http://127.0.0.1:8000/ (--port P; 0 picks a free one).
serve +ARGS:
    cargo run --release -- serve {{ARGS}}

# The decide job of a SLURM study with seeds until decided (decide.sbatch runs it).
next-round DIR *ARGS:
    cargo run --release -- next-round {{DIR}} {{ARGS}}

# Delete the runs a study set aside in DIR/superseded/ (--dry-run lists them).
prune DIR *ARGS:
    cargo run --release -- prune {{DIR}} {{ARGS}}

# Write (and with --submit, queue) the SLURM scripts of a study.
slurm FILE *ARGS:
    cargo run --release -- slurm {{FILE}} {{ARGS}}

# Tune the threshold, minimum area and presence threshold of a trained variant.
tune RUN *ARGS:
    cargo run --release -- tune --run {{RUN}} {{ARGS}}

# A grid of augmented training samples, to check an [augment] table by eye.
augment-preview FILE *ARGS:
    cargo run --release -- augment-preview {{FILE}} {{ARGS}}

# Studies against the first: differing keys, test and validation Dice differences [95%], a page.
compare +ARGS:
    cargo run --release -- compare {{ARGS}}

# Predict masks for a folder of images with a trained variant.
predict RUN INPUT OUT *ARGS:
    cargo run --release -- predict --run {{RUN}} --input {{INPUT}} --out {{OUT}} {{ARGS}}

# Training and inference throughput on random data.
bench *ARGS:
    cargo run --release -- bench {{ARGS}}

# The test suite (what CI runs).
test:
    cargo test --release
