// Package iscsi is the iSCSI wire protocol (RFC 7143) shared by rampart's target and
// initiator: the PDU codec (48-byte basic header segment, additional header segments,
// padded data segment, CRC32C header and data digests), the text key=value codec used by
// Login and Text requests, operational parameter negotiation and CHAP authentication.
//
// A PDU is a fixed BHS followed by optional AHS and a data segment padded to 4 bytes.
// Which fields the BHS holds depends on the opcode; PDU offers typed accessors for the
// ones common to all opcodes and big-endian helpers for the rest, so one value is reused
// for every PDU of a connection and the hot path allocates nothing.
//
// Negotiation follows the RFC's result functions: boolean keys are AND or OR, numeric keys
// take the minimum or maximum, MaxRecvDataSegmentLength is declared by each side for what
// it receives, and keys nobody understands are answered NotUnderstood.
package iscsi
