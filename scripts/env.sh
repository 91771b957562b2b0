# Sourced by the scripts: puts the Go toolchain on PATH and lets the go command fetch
# the toolchain go.mod asks for when the installed one is older.
export PATH=$PATH:/usr/local/go/bin:$HOME/go/bin
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
export GOFLAGS=${GOFLAGS:-}
