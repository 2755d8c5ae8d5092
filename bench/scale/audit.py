#!/usr/bin/env python3
"""Scale audit: times every case of bench/scale/audit_cases.sql on two books.

  python3 bench/scale/audit.py DB_SMALL USERS_SMALL DB_LARGE USERS_LARGE [ROUNDS]

Each case runs ROUNDS times in one session per book, alternating the books
case by case, inside BEGIN ... ROLLBACK (writers leave nothing behind), warm
(an untimed first run), and the best time is kept. psql variables per book:
:n (users), :mid (n/2), :free, :pro (period ending at the due moment),
:pro30 (ending within 30 days), :yearly, :trial, :ent, :pastdue: users of
each kind in the middle of the id range (book.sql's u % 100 classes).
Prints: case, small ms, large ms, ratio.
"""
import re, subprocess, sys

def cases(path):
    out, name, body = [], None, []
    for line in open(path):
        m = re.match(r'^-- case: (\S+)', line)
        if m:
            if name:
                out.append((name, ''.join(body).strip()))
            name, body = m.group(1), []
        elif name and line.startswith('-- go'):
            body.append('@@GO\n')
        elif name and not line.startswith('--'):
            body.append(line)
    if name:
        out.append((name, ''.join(body).strip()))
    return out

def book_vars(n):
    mid = n // 2
    base = mid - mid % 100
    k = lambda c: base + c
    return dict(n=n, mid=mid, room=n // 10, freshroom=mid + 7, newuser=n + 17, free=k(1), pro=k(61), pro30=k(77), yearly=k(82), trial=k(90), ent=k(96), pastdue=k(98))

def run(db, n, items, rounds):
    v = book_vars(n)
    script = ['\\set ON_ERROR_STOP 0', '\\o /dev/null', "SET client_min_messages = warning;"]
    for key, val in v.items():
        script.append(f'\\set {key} {val}')
    for name, sql in items:
        for r in range(rounds + 1):
            setup, _, timed = sql.rpartition('@@GO')
            script += ['\\timing off', 'BEGIN;', setup, f'\\echo @@ {name} {r}', '\\timing on', timed.strip().rstrip(';') + ';',
                       '\\timing off', f'\\echo @@end', 'ROLLBACK;']
    p = subprocess.run(['psql', '-X', '-q', '-d', db], input='\n'.join(script) + '\n', capture_output=True, text=True)
    times, cur, errs = {}, None, {}
    for line in p.stdout.splitlines():
        m = re.match(r'^@@ (\S+) (\d+)$', line)
        if m:
            cur = (m.group(1), int(m.group(2)))
            continue
        if line == '@@end':
            cur = None
            continue
        m = re.match(r'^Time: ([\d.]+) ms', line)
        if m and cur and cur[1] > 0:
            times.setdefault(cur[0], []).append(float(m.group(1)))
    for line in p.stderr.splitlines():
        if 'ERROR' in line:
            errs.setdefault('any', []).append(line)
    return times, errs, p.stderr

def main():
    small, ns, large, nl = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    path = sys.argv[6] if len(sys.argv) > 6 else 'bench/scale/audit_cases.sql'
    only = sys.argv[7].split(',') if len(sys.argv) > 7 else None
    items = [c for c in cases(path) if not only or c[0] in only]
    rows = []
    for item in items:  # alternate the books case by case
        ts, _, es = run(small, ns, [item], rounds)
        tl, _, el = run(large, nl, [item], rounds)
        a = min(ts.get(item[0], [float('nan')])); b = min(tl.get(item[0], [float('nan')]))
        err = ''
        for e in (es, el):
            for line in e.splitlines():
                if 'ERROR' in line:
                    err = line.strip()[:100]; break
        print(f'{item[0]:40s} {a:10.2f} {b:10.2f} {b / a if a else float("nan"):7.2f} {err}', flush=True)

main()
