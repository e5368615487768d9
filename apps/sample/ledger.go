package sample

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Account is an account as the tools and resources report it. Amounts are
// whole currency units.
type Account struct {
	ID      string `json:"id" jsonschema:"account identifier, as used by the tools and in ledger://accounts/{id}"`
	Owner   string `json:"owner" jsonschema:"display name of the account holder"`
	Balance int64  `json:"balance" jsonschema:"current balance in whole currency units"`
}

// Entry is one line of an account's history.
type Entry struct {
	Sequence     int    `json:"sequence" jsonschema:"position in the ledger, increasing across all accounts"`
	Kind         string `json:"kind" jsonschema:"opening, debit or credit"`
	Counterparty string `json:"counterparty,omitempty" jsonschema:"the other account of a transfer"`
	Amount       int64  `json:"amount" jsonschema:"amount moved by this entry"`
	Balance      int64  `json:"balance" jsonschema:"balance after this entry"`
}

// AccountDetail is an account with its history, as ledger://accounts/{id}
// reports it.
type AccountDetail struct {
	Account
	History []Entry `json:"history"`
}

// ledger is one server's in-memory book of accounts. Every server has its own,
// so two instances behind the broker can be told apart by their balances.
type ledger struct {
	mu       sync.Mutex
	accounts map[string]*AccountDetail
	sequence int
}

func newLedger() *ledger {
	l := &ledger{accounts: make(map[string]*AccountDetail)}
	for _, seed := range []Account{
		{ID: "alice", Owner: "Alice Archer", Balance: 5000},
		{ID: "bob", Owner: "Bob Baker", Balance: 1200},
		{ID: "carol", Owner: "Carol Cooper", Balance: 300},
	} {
		l.sequence++
		l.accounts[seed.ID] = &AccountDetail{
			Account: seed,
			History: []Entry{{Sequence: l.sequence, Kind: "opening", Amount: seed.Balance, Balance: seed.Balance}},
		}
	}
	return l
}

// list returns every account, ordered by id.
func (l *ledger) list() []Account {
	l.mu.Lock()
	defer l.mu.Unlock()
	accounts := make([]Account, 0, len(l.accounts))
	for _, a := range l.accounts {
		accounts = append(accounts, a.Account)
	}
	slices.SortFunc(accounts, func(a, b Account) int { return strings.Compare(a.ID, b.ID) })
	return accounts
}

// detail returns a copy of one account and its history.
func (l *ledger) detail(id string) (AccountDetail, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.accounts[id]
	if !ok {
		return AccountDetail{}, fmt.Errorf("%w %q", errUnknownAccount, id)
	}
	return AccountDetail{Account: a.Account, History: slices.Clone(a.History)}, nil
}

// checkTransfer reports whether transfer would succeed now, without moving
// anything; tools call it before asking the client for a confirmation.
func (l *ledger) checkTransfer(from, to string, amount int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _, err := l.transferPartiesLocked(from, to, amount)
	return err
}

// transfer moves amount from one account to another and returns both
// accounts afterwards.
func (l *ledger) transfer(from, to string, amount int64) (Account, Account, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	source, destination, err := l.transferPartiesLocked(from, to, amount)
	if err != nil {
		return Account{}, Account{}, err
	}
	source.Balance -= amount
	destination.Balance += amount
	l.sequence++
	source.History = append(source.History, Entry{Sequence: l.sequence, Kind: "debit", Counterparty: to, Amount: amount, Balance: source.Balance})
	destination.History = append(destination.History, Entry{Sequence: l.sequence, Kind: "credit", Counterparty: from, Amount: amount, Balance: destination.Balance})
	return source.Account, destination.Account, nil
}

func (l *ledger) transferPartiesLocked(from, to string, amount int64) (source, destination *AccountDetail, err error) {
	source, ok := l.accounts[from]
	if !ok {
		return nil, nil, fmt.Errorf("%w %q", errUnknownAccount, from)
	}
	destination, ok = l.accounts[to]
	if !ok {
		return nil, nil, fmt.Errorf("%w %q", errUnknownAccount, to)
	}
	switch {
	case amount <= 0:
		return nil, nil, errInvalidAmount
	case from == to:
		return nil, nil, errSameAccount
	case amount > source.Balance:
		return nil, nil, fmt.Errorf("%w: %q holds %d, transfer needs %d", errInsufficientFunds, from, source.Balance, amount)
	}
	return source, destination, nil
}
