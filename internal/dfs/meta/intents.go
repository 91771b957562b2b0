package meta

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Request intents let the master apply a retried namespace change once.
// Before a change that a retry could not simply repeat (create, link,
// unlink, rename), the master records an intent keyed by the client's
// session and request number. The intent is committed without its own
// fsync, ahead of the change in the same write-ahead log, so a change that
// survived a crash always has its intent: a retry without an intent was
// never applied, and a retry with one is checked against the namespace.
//
//	q  time u64 (unix seconds), session u64, seq u64  ->  value (the master's)
const pIntent = 'q'

func intentKey(at int64, session, seq uint64) []byte {
	k := binary.BigEndian.AppendUint64([]byte{pIntent}, uint64(at))
	k = binary.BigEndian.AppendUint64(k, session)
	return binary.BigEndian.AppendUint64(k, seq)
}

// Intent is one recorded request.
type Intent struct {
	At           int64 // unix seconds when recorded
	Session, Seq uint64
	Value        []byte
}

// PutIntent records an intent. It returns once the record is ordered in the
// write-ahead log before any change committed afterwards.
func (s *Store) PutIntent(in Intent) error {
	if err := s.db.Set(intentKey(in.At, in.Session, in.Seq), in.Value, pebble.NoSync); err != nil {
		return fmt.Errorf("record intent of session %016x request %d: %w", in.Session, in.Seq, err)
	}
	return nil
}

// Intents returns every recorded intent, oldest first.
func (s *Store) Intents() ([]Intent, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pIntent}, UpperBound: []byte{pIntent + 1}})
	if err != nil {
		return nil, fmt.Errorf("read intents: %w", err)
	}
	defer it.Close()
	var out []Intent
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 25 {
			return nil, fmt.Errorf("intent key of %d bytes: %w", len(k), ErrCorrupt)
		}
		out = append(out, Intent{
			At:      int64(binary.BigEndian.Uint64(k[1:])),
			Session: binary.BigEndian.Uint64(k[9:]),
			Seq:     binary.BigEndian.Uint64(k[17:]),
			Value:   append([]byte(nil), it.Value()...),
		})
	}
	return out, nil
}

// DropIntentsBefore deletes the intents recorded before t.
func (s *Store) DropIntentsBefore(t time.Time) error {
	if err := s.db.DeleteRange([]byte{pIntent}, intentKey(t.Unix(), 0, 0), pebble.NoSync); err != nil {
		return fmt.Errorf("drop intents before %s: %w", t.Format(time.RFC3339), err)
	}
	return nil
}
