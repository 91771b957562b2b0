// Package archtest holds tests about the shape of the tree itself (layering, docs).
package archtest
