package sale

// QueuedRecords is how many records wait for the record writer's next transaction.
func (s *Service) QueuedRecords() int {
	s.records.mu.Lock()
	defer s.records.mu.Unlock()
	return len(s.records.queue)
}
