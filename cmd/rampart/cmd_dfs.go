package main

import "github.com/spf13/cobra"

// addDFSCommands adds the distributed file system's commands (master, chunkserver,
// server, mount, fs, info). The DFS is being built; none are registered yet.
func addDFSCommands(root *cobra.Command, g *globalOptions) {}
