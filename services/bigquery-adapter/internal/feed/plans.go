package feed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Plans: before an adapter replica writes a group of entries into BigQuery with the Storage Write
// API, it records in Redis where their rows go: for each table, a write stream, the offset of the
// first row and the number of rows. Whoever later finds one of those entries pending (the replica
// itself after a restart, another one after a claim) completes the same plan: the same rows at
// the same offsets, which BigQuery applies at most once. The plans live in one hash
// (bus.Names.ExportPlans), so every step is one atomic command or script even on Redis Cluster:
//
//	plan:<id>      the plan (JSON); its id is its first entry's id
//	entry:<entry>  the id of the plan the entry belongs to
//	final:<stream> the row count of a write stream a replica finalized

// Plan is where the rows of a group of entries go.
type Plan struct {
	ID      string   `json:"-"`
	raw     string   // the plan as recorded, for UpdatePlan's compare-and-set
	Entries []string `json:"e"`           // entry ids, in stream order
	Skip    []string `json:"s,omitempty"` // row ids left out: written before, or refused for good
	NoJSON  []string `json:"j,omitempty"` // row ids written without payload_json
	Parts   []Part   `json:"p"`           // one per table with rows
}

// Part is the rows of one table in a plan: Rows rows from Offset on in write stream Stream.
type Part struct {
	Table  string `json:"t"`
	Stream string `json:"w"`
	Offset int64  `json:"o"`
	Rows   int    `json:"n"`
}

// createPlanScript records plan ARGV[1] (JSON ARGV[2]) for entries ARGV[3..] unless one of them
// has a plan already; then it records nothing and returns each such entry and its plan id.
var createPlanScript = redis.NewScript(`
local taken = {}
for i = 3, #ARGV do
  local p = redis.call('HGET', KEYS[1], 'entry:' .. ARGV[i])
  if p then
    taken[#taken + 1] = ARGV[i]
    taken[#taken + 1] = p
  end
end
if #taken > 0 then return taken end
redis.call('HSET', KEYS[1], 'plan:' .. ARGV[1], ARGV[2])
for i = 3, #ARGV do
  redis.call('HSET', KEYS[1], 'entry:' .. ARGV[i], ARGV[1])
end
return {}
`)

// updatePlanScript rewrites plan ARGV[1] as ARGV[3] if it is still ARGV[2]; it returns 1 when
// it did, 0 when the plan is gone, and the plan as it is when someone changed it meanwhile.
var updatePlanScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'plan:' .. ARGV[1])
if not cur then return 0 end
if cur ~= ARGV[2] then return cur end
redis.call('HSET', KEYS[1], 'plan:' .. ARGV[1], ARGV[3])
return 1
`)

// CreatePlan records p (p.ID is set to its first entry) unless one of its entries already
// belongs to a plan. It returns those entries with the id of their plan; then nothing was
// recorded.
func (f *Feed) CreatePlan(ctx context.Context, p *Plan) (map[string]string, error) {
	if len(p.Entries) == 0 {
		return nil, errors.New("feed: a plan without entries")
	}
	p.ID = p.Entries[0]
	js, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	args := make([]any, 0, 2+len(p.Entries))
	args = append(args, p.ID, js)
	for _, e := range p.Entries {
		args = append(args, e)
	}
	res, err := createPlanScript.Run(ctx, f.c, []string{f.plans}, args...).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	if len(res) == 0 {
		p.raw = string(js)
		return nil, nil
	}
	taken := make(map[string]string, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		taken[res[i]] = res[i+1]
	}
	return taken, nil
}

// UpdateResult says what UpdatePlan did.
type UpdateResult int

// UpdatePlan's results.
const (
	Updated UpdateResult = iota // the plan is p now
	Changed                     // someone changed the plan first: p was not written
	Gone                        // the plan was finished (its entries are acknowledged)
)

// UpdatePlan rewrites the plan as p (after an attempt that certainly wrote nothing), provided
// it is still as p was read or last written: two replicas completing the same plan cannot both
// move it. On Changed it returns the plan as it is now.
func (f *Feed) UpdatePlan(ctx context.Context, p *Plan) (UpdateResult, *Plan, error) {
	js, err := json.Marshal(p)
	if err != nil {
		return 0, nil, err
	}
	res, err := updatePlanScript.Run(ctx, f.c, []string{f.plans}, p.ID, p.raw, js).Result()
	if err != nil {
		return 0, nil, err
	}
	switch v := res.(type) {
	case int64:
		if v == 1 {
			p.raw = string(js)
			return Updated, nil, nil
		}
		return Gone, nil, nil
	case string:
		cur := &Plan{ID: p.ID, raw: v}
		if err := json.Unmarshal([]byte(v), cur); err != nil {
			return 0, nil, fmt.Errorf("feed: plan %s: %w", p.ID, err)
		}
		return Changed, cur, nil
	}
	return 0, nil, fmt.Errorf("feed: updating plan %s: reply %T", p.ID, res)
}

// Plans returns the plans of the given entries that have one, by entry id; entries of one plan
// share the same *Plan.
func (f *Feed) Plans(ctx context.Context, entryIDs []string) (map[string]*Plan, error) {
	out := map[string]*Plan{}
	for len(entryIDs) > 0 {
		n := min(len(entryIDs), 1000)
		fields := make([]string, n)
		for i, e := range entryIDs[:n] {
			fields[i] = "entry:" + e
		}
		ids, err := f.c.HMGet(ctx, f.plans, fields...).Result()
		if err != nil {
			return nil, err
		}
		byPlan := map[string][]string{}
		var planIDs []string
		for i, v := range ids {
			if id, ok := v.(string); ok {
				if byPlan[id] == nil {
					planIDs = append(planIDs, id)
				}
				byPlan[id] = append(byPlan[id], entryIDs[i])
			}
		}
		if len(planIDs) > 0 {
			pf := make([]string, len(planIDs))
			for i, id := range planIDs {
				pf[i] = "plan:" + id
			}
			raw, err := f.c.HMGet(ctx, f.plans, pf...).Result()
			if err != nil {
				return nil, err
			}
			for i, v := range raw {
				s, ok := v.(string)
				if !ok {
					continue // finished between the two reads: its entries are acknowledged
				}
				p := &Plan{ID: planIDs[i], raw: s}
				if err := json.Unmarshal([]byte(s), p); err != nil {
					return nil, fmt.Errorf("feed: plan %s: %w", planIDs[i], err)
				}
				for _, e := range byPlan[planIDs[i]] {
					out[e] = p
				}
			}
		}
		entryIDs = entryIDs[n:]
	}
	return out, nil
}

// FinishPlan acknowledges every entry of p, then forgets the plan. In that order: a plan whose
// entries are still pending must never disappear (they would be planned again), while a plan
// left behind by a crash between the two steps is only garbage (CleanPlans).
func (f *Feed) FinishPlan(ctx context.Context, p *Plan) error {
	if err := f.Ack(ctx, p.Entries); err != nil {
		return err
	}
	return f.forget(ctx, p.ID, p.Entries)
}

func (f *Feed) forget(ctx context.Context, id string, entries []string) error {
	fields := make([]string, 0, 1+len(entries))
	fields = append(fields, "plan:"+id)
	for _, e := range entries {
		fields = append(fields, "entry:"+e)
	}
	return f.c.HDel(ctx, f.plans, fields...).Err()
}

// CleanPlans forgets up to about limit plans whose entries are no longer pending (a replica
// stopped between acknowledging them and forgetting the plan), looking at one page of the hash
// from cursor. It returns the next cursor (0: the scan is complete) and how many it forgot.
func (f *Feed) CleanPlans(ctx context.Context, cursor uint64, limit int) (uint64, int, error) {
	kv, next, err := f.c.HScan(ctx, f.plans, cursor, "plan:*", int64(limit)).Result()
	if err != nil {
		return 0, 0, err
	}
	type cand struct {
		id  string
		p   Plan
		cmd *redis.XPendingExtCmd
	}
	var cands []*cand
	pipe := f.c.Pipeline()
	for i := 0; i+1 < len(kv); i += 2 {
		c := &cand{id: kv[i][len("plan:"):]}
		if json.Unmarshal([]byte(kv[i+1]), &c.p) != nil || len(c.p.Entries) == 0 {
			continue
		}
		// The entries of a plan are acknowledged in one XACK: its first one tells for all.
		e := c.p.Entries[0]
		c.cmd = pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: f.stream, Group: f.o.Group, Start: e, End: e, Count: 1})
		cands = append(cands, c)
	}
	if len(cands) == 0 {
		return next, 0, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, 0, err
	}
	n := 0
	for _, c := range cands {
		if ps, err := c.cmd.Result(); err == nil && len(ps) == 0 {
			if err := f.forget(ctx, c.id, c.p.Entries); err != nil {
				return 0, n, err
			}
			n++
		}
	}
	return next, n, nil
}

// FinalCount returns the row count recorded for write stream name when a replica finalized
// it, and whether one was recorded.
func (f *Feed) FinalCount(ctx context.Context, name string) (int64, bool, error) {
	s, err := f.c.HGet(ctx, f.plans, "final:"+name).Result()
	if errors.Is(err, redis.Nil) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil, err
}

// SetFinalCount records the row count of write stream name, which a replica just finalized.
func (f *Feed) SetFinalCount(ctx context.Context, name string, rows int64) error {
	return f.c.HSet(ctx, f.plans, "final:"+name, rows).Err()
}

// Fetch returns the entries with the given ids that the stream still holds (whoever they are
// pending for), in the order asked.
func (f *Feed) Fetch(ctx context.Context, ids []string) ([]Entry, error) {
	pipe := f.c.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.XRange(ctx, f.stream, id, id)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	var out []Entry
	for _, c := range cmds {
		ms, err := c.Result()
		if err != nil {
			return nil, err
		}
		out = append(out, entries(ms)...)
	}
	return out, nil
}
