#!/usr/bin/env python3
"""The model test (test/model/model_test.py) with a different operation mix
(session 8 money review): an Enterprise *monthly* plan beside the shipped
ones, so same-interval upgrades keep the period and same-interval downgrades
are scheduled; more plan changes, pauses/resumes and refunds; the same
customer acting again seconds later (changes right at a boundary); and
maintenance less often, so catch-up inside operations does more of the work.

  cd test/model && PGHOST=... PGPORT=... PGUSER=postgres \
    python3 ../review/model_biased.py --seeds 701,702 --steps 3000
"""
import datetime as dt
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'model'))
import model_test as mt  # noqa: E402

mt.PLANS['ent_monthly'] = ('enterprise', 'monthly', 9999, 30)

_one = mt.Psql.one


def one(self, sql):
    rows = _one(self, sql)
    if sql.strip() == 'CREATE EXTENSION billing':
        _one(self, "INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency,"
                   " trial_days, limits, features) VALUES ('ent_monthly', 'Enterprise (monthly)', 'enterprise',"
                   " 'monthly', 9999, 'usd', 30, '{}', '{}')")
    return rows


mt.Psql.one = one


BIAS = os.environ.get('BIAS', '')


def generate(seed, steps, users):
    if BIAS == 'yearly_refunds':
        return generate_yearly_refunds(seed, steps, users)
    rng = random.Random(seed)
    t = mt.START
    out = []
    per_step = mt.SPAN / steps
    user = 'u0'
    for _ in range(steps):
        x = rng.random()
        if x < 0.6:
            t = t + dt.timedelta(seconds=rng.choice([0, 1, 1, 2, 60, rng.randrange(1, 900)]))
        else:
            t = t + dt.timedelta(seconds=int(rng.expovariate(1 / (2 * per_step.total_seconds()))))
            user = f'u{rng.randrange(users)}'
        r = rng.random()
        plan = rng.choice(list(mt.PLANS))
        if r < 0.10:
            out.append((t, 'subscribe', user, (rng.choice(['pro_monthly', 'ent_monthly', 'pro_yearly', plan]),
                                               rng.random() < 0.5)))
        elif r < 0.14:
            out.append((t, 'start_trial', user, (plan,)))
        elif r < 0.40:
            kind = rng.random()
            amount = rng.choice(['due'] * 6 + ['half', 'over', 'over', 2999, 9999, 1, 1000])
            out.append((t, 'pay', user, (amount, kind > 0.1, 'usd')))
        elif r < 0.46:
            out.append((t, 'cancel', user, (rng.random() < 0.6,)))
        elif r < 0.50:
            out.append((t, 'reactivate', user, ()))
        elif r < 0.58:
            out.append((t, 'pause' if r < 0.54 else 'resume', user, ()))
        elif r < 0.72:
            out.append((t, 'change_plan', user, (rng.choice([plan, 'ent_monthly', 'pro_monthly']),)))
        elif r < 0.97:
            out.append((t, 'refund', user, (rng.randrange(1000), rng.choice([1, 100, 1000, 2999, 9999, 28800]),
                                            rng.random() < 0.2)))
        else:
            out.append((t, 'maintenance', None, ()))
    return out


def generate_yearly_refunds(seed, steps, users):
    """BIAS=yearly_refunds: yearly plans paid up front, upgrades to monthly
    Enterprise (negative proration totals, credit), refunds of whole yearly
    payments after them, maintenance often (so the reports' history property
    sees what a later refund rewrites)."""
    rng = random.Random(seed)
    t = mt.START
    out = []
    per_step = mt.SPAN / steps
    user = 'u0'
    for _ in range(steps):
        if rng.random() < 0.5:
            t = t + dt.timedelta(seconds=rng.choice([1, 60, 600, rng.randrange(1, 3600)]))
        else:
            t = t + dt.timedelta(seconds=int(rng.expovariate(1 / (2 * per_step.total_seconds()))))
            user = f'u{rng.randrange(users)}'
        r = rng.random()
        if r < 0.12:
            out.append((t, 'subscribe', user, (rng.choice(['pro_yearly', 'pro_yearly', 'enterprise_yearly',
                                                           'pro_monthly']), rng.random() < 0.3)))
        elif r < 0.40:
            out.append((t, 'pay', user, (rng.choice(['due', 'due', 'due', 'over', 'half', 28800]), rng.random() > 0.05,
                                         'usd')))
        elif r < 0.46:
            out.append((t, 'cancel', user, (rng.random() < 0.5,)))
        elif r < 0.48:
            out.append((t, 'reactivate', user, ()))
        elif r < 0.52:
            out.append((t, 'pause' if r < 0.50 else 'resume', user, ()))
        elif r < 0.66:
            out.append((t, 'change_plan', user, (rng.choice(['ent_monthly', 'ent_monthly', 'enterprise_yearly',
                                                             'pro_monthly', 'pro_yearly']),)))
        elif r < 0.90:
            out.append((t, 'refund', user, (rng.randrange(1000), rng.choice([28800, 99900, 9999, 2999, 1000, 1]),
                                            rng.random() < 0.3)))
        else:
            out.append((t, 'maintenance', None, ()))
    return out


mt.generate = generate

if __name__ == '__main__':
    mt.main()
