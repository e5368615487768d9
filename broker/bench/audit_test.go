package bench

import "testing"

// auditSyncBroker is exchangeBroker, the whole pipeline, writing its audit
// trail in %[6]q with sync durability: a call is answered only once its
// record is on disk, fsynced with the records of the calls beside it.
const auditSyncBroker = exchangeBroker + `audit: {dir: %[6]q, durability: sync}
`

// auditAsyncBroker is auditSyncBroker with async durability: a call is
// answered once its record is queued for the trail.
const auditAsyncBroker = exchangeBroker + `audit: {dir: %[6]q, durability: async}
`

// auditBrokerPath is exchangeBrokerPath for yaml with an audit trail (see
// auditSyncBroker).
func auditBrokerPath(yaml string) func(testing.TB, string) target {
	return func(tb testing.TB, upstream string) target {
		dst := exchangeBrokerPath(yaml)(tb, upstream)
		dst.audited = true
		return dst
	}
}

// auditBatches is what the broker's audit trail has committed so far, read
// from mcpbroker_audit_batch_records on its /metrics: the records written
// and the batches they were written in, one fsync each. Both are 0 for a
// broker without a trail.
type auditBatches struct{ records, batches float64 }

func readAuditBatches(tb testing.TB, admin string) auditBatches {
	tb.Helper()
	var sum auditBatches
	if f := readMetrics(tb, admin)["mcpbroker_audit_batch_records"]; f != nil {
		for _, m := range f.GetMetric() {
			sum.records += m.GetHistogram().GetSampleSum()
			sum.batches += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// since is what was committed between earlier and a.
func (a auditBatches) since(earlier auditBatches) auditBatches {
	return auditBatches{records: a.records - earlier.records, batches: a.batches - earlier.batches}
}
