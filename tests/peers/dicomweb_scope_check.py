"""What one user sees through DICOMweb, with dicomweb-client and a bearer token.

  python3 dicomweb_scope_check.py --url http://HOST:PORT/dicom-web --token T \
      --study UID [--study UID ...]

Prints one JSON object: the StudyInstanceUIDs QIDO-RS returns, and for every
--study the HTTP status of a study retrieve, a study metadata request and a series
search inside it (200 when it worked; the error's status otherwise).
"""

import argparse
import json

import requests
from dicomweb_client.api import DICOMwebClient


def status_of(call):
    try:
        call()
        return 200
    except requests.exceptions.HTTPError as e:
        return e.response.status_code


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--study", action="append", default=[])
    args = ap.parse_args()
    client = DICOMwebClient(
        args.url, timeout=60, headers={"Authorization": f"Bearer {args.token}"}
    )
    if f":{client.port}" in args.url:
        client.host = f"{client.host}:{client.port}"
    found = [s["0020000D"]["Value"][0] for s in client.search_for_studies()]
    out = {"qido": sorted(found), "studies": {}}
    for uid in args.study:
        out["studies"][uid] = {
            "retrieve": status_of(lambda: client.retrieve_study(uid)),
            "metadata": status_of(lambda: client.retrieve_study_metadata(uid)),
            "series": status_of(lambda: client.search_for_series(study_instance_uid=uid)),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
