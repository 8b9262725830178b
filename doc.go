// Package boxoffice holds the domain of a ticket seller that never oversells, never charges twice
// and never sends twice: shows and their tiers, holds, orders, domain events, error codes, and the
// contracts between the parts (Store, Inventory, Payments). It imports no driver and no other
// package of the project, so every adapter depends on it and never the other way round.
package boxoffice
