"""ListUsers against account size (benches/run-iam-list.sh): makes N users under /bulk/, 8 calls at a
time, then times ListUsers one call at a time, the median of 100 after one warm-up: MaxItems=1, the
first page (100), a PathPrefix that matches none; then every page through botocore's paginator.

    python benches/iam_list.py ENDPOINT LABEL N     (credentials: profile `envelope` of
                                                     AWS_SHARED_CREDENTIALS_FILE)
"""
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.config

endpoint, label, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = botocore.config.Config(retries={"max_attempts": 1}, max_pool_connections=16)
iam = boto3.Session(profile_name="envelope").client(
    "iam", endpoint_url=endpoint, region_name="us-east-1", config=cfg)
with ThreadPoolExecutor(8) as ex:
    list(ex.map(lambda i: iam.create_user(UserName=f"u{i:05d}", Path="/bulk/"), range(n)))


def median_ms(call, times=100):
    call()
    samples = []
    for _ in range(times):
        t = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


one = median_ms(lambda: iam.list_users(MaxItems=1))
first = median_ms(lambda: iam.list_users())
none = median_ms(lambda: iam.list_users(PathPrefix="/none/"))
t = time.perf_counter()
listed = sum(len(p["Users"]) for p in iam.get_paginator("list_users").paginate())
every = (time.perf_counter() - t) * 1000
print(f"{label}\tusers={listed}\tmaxitems1_ms={one:.2f}\tfirst_page_ms={first:.2f}"
      f"\tno_match_ms={none:.2f}\tevery_page_ms={every:.0f}", flush=True)
