// Package nbd serves Devices over the Network Block Device protocol, fixed newstyle
// negotiation (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md), so
// that nbd-client, libnbd's tools (nbdinfo, nbdcopy, nbdsh) and fio's nbd engine can use
// any rampart volume.
//
// Negotiation supports NBD_OPT_EXPORT_NAME, LIST, INFO, GO and ABORT; STARTTLS and
// structured replies are refused, so replies are simple replies. Transmission supports
// READ, WRITE (with FUA), FLUSH, TRIM, WRITE_ZEROES (with NO_HOLE) and CACHE, many
// requests in flight per connection, executed concurrently and answered as they finish;
// a read's reply header and data go out in one writev, straight from the request's
// pooled buffer. The server listens on TCP or, for clients on the same host, on a Unix
// socket (Config.Listen "unix:PATH"; Server.URI gives the libnbd URI either way).
package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Wire constants of the NBD protocol.
const (
	magicInit   = 0x4e42444d41474943 // "NBDMAGIC"
	magicOpt    = 0x49484156454F5054 // "IHAVEOPT"
	magicReply  = 0x3e889045565a9
	magicReq    = 0x25609513
	magicSimple = 0x67446698

	flagFixedNewstyle = 1 << 0
	flagNoZeroes      = 1 << 1

	optExportName      = 1
	optAbort           = 2
	optList            = 3
	optStartTLS        = 5
	optInfo            = 6
	optGo              = 7
	optStructuredReply = 8

	repAck          = 1
	repServer       = 2
	repInfo         = 3
	repErrUnsup     = 1<<31 + 1
	repErrPolicy    = 1<<31 + 2
	repErrInvalid   = 1<<31 + 3
	repErrUnknown   = 1<<31 + 6
	repErrTooBig    = 1<<31 + 9
	infoExport      = 0
	infoName        = 1
	infoDescription = 2
	infoBlockSize   = 3

	tfHasFlags        = 1 << 0
	tfReadOnly        = 1 << 1
	tfSendFlush       = 1 << 2
	tfSendFUA         = 1 << 3
	tfSendTrim        = 1 << 5
	tfSendWriteZeroes = 1 << 6
	tfCanMultiConn    = 1 << 8
	tfSendCache       = 1 << 10

	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdCache       = 5
	cmdWriteZeroes = 6

	cmdFlagFUA    = 1 << 0
	cmdFlagNoHole = 1 << 1

	errPerm     = 1
	errIO       = 5
	errInval    = 22
	errNoSpc    = 28
	errOverflow = 75
	errNotSup   = 95
)

// Limits on what a client may send.
const (
	maxOptionLen  = 64 << 10 // option data
	maxRequestLen = 32 << 20 // one READ or WRITE
)

// ErrProtocol is returned for a client that breaks the protocol.
var ErrProtocol = errors.New("nbd: protocol violation")

// request is one transmission-phase request header.
type request struct {
	flags  uint16
	typ    uint16
	handle uint64
	offset uint64
	length uint32
}

const requestSize = 28

// parseRequest decodes a request header.
func parseRequest(b []byte) (request, error) {
	if len(b) < requestSize {
		return request{}, fmt.Errorf("request header of %d bytes: %w", len(b), ErrProtocol)
	}
	if m := binary.BigEndian.Uint32(b); m != magicReq {
		return request{}, fmt.Errorf("request magic %#x: %w", m, ErrProtocol)
	}
	return request{
		flags:  binary.BigEndian.Uint16(b[4:]),
		typ:    binary.BigEndian.Uint16(b[6:]),
		handle: binary.BigEndian.Uint64(b[8:]),
		offset: binary.BigEndian.Uint64(b[16:]),
		length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

// option is one negotiation-phase option from the client.
type option struct {
	code uint32
	data []byte
}

func readOption(r io.Reader) (option, error) {
	var h [16]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return option{}, err
	}
	if m := binary.BigEndian.Uint64(h[:]); m != magicOpt {
		return option{}, fmt.Errorf("option magic %#x: %w", m, ErrProtocol)
	}
	o := option{code: binary.BigEndian.Uint32(h[8:])}
	n := binary.BigEndian.Uint32(h[12:])
	if n > maxOptionLen {
		return option{}, fmt.Errorf("option %d of %d bytes: %w", o.code, n, ErrProtocol)
	}
	o.data = make([]byte, n)
	if _, err := io.ReadFull(r, o.data); err != nil {
		return option{}, err
	}
	return o, nil
}

func optReply(w io.Writer, opt, typ uint32, data []byte) error {
	b := make([]byte, 20+len(data))
	binary.BigEndian.PutUint64(b, magicReply)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], typ)
	binary.BigEndian.PutUint32(b[16:], uint32(len(data)))
	copy(b[20:], data)
	_, err := w.Write(b)
	return err
}

// parseInfoRequest decodes the data of NBD_OPT_INFO and NBD_OPT_GO: the export name and
// the information types asked for.
func parseInfoRequest(d []byte) (name string, infos []uint16, err error) {
	if len(d) < 4 {
		return "", nil, fmt.Errorf("info request of %d bytes: %w", len(d), ErrProtocol)
	}
	n := binary.BigEndian.Uint32(d)
	if uint64(n)+6 > uint64(len(d)) {
		return "", nil, fmt.Errorf("info request name of %d bytes in %d: %w", n, len(d), ErrProtocol)
	}
	name = string(d[4 : 4+n])
	rest := d[4+n:]
	k := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*k {
		return "", nil, fmt.Errorf("info request with %d types in %d bytes: %w", k, len(rest), ErrProtocol)
	}
	for i := range k {
		infos = append(infos, binary.BigEndian.Uint16(rest[2*i:]))
	}
	return name, infos, nil
}
