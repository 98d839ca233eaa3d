package history

// SetExportLimits lets the HTTP tests cross export batches and the row
// limit with a handful of records.
func SetExportLimits(m *Module, batch, max int) { m.exportBatch, m.exportMax = batch, max }
