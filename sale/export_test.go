package sale

import "boxoffice"

// QueuedRecords is how many records wait for the record writer's next transaction.
func (s *Service) QueuedRecords() int {
	s.records.mu.Lock()
	defer s.records.mu.Unlock()
	return len(s.records.queue)
}

// DriveAndWait asks for the order's payment driver as a retry would, waits for it to end, and
// returns the answer it stored (nil when it stored none).
func (s *Service) DriveAndWait(o *boxoffice.Order) *boxoffice.Response {
	d := s.drive(o)
	<-d.done
	return d.res
}
