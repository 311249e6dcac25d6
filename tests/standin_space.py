"""A local stand-in of the Hugging Face Hub's Space routes, for the MT-Bench calibration source
(FastChat's Space lmsys/mt-bench): ``/api/spaces/{id}/revision/{rev}?blobs=true`` and
``/spaces/{id}/resolve/{rev}/{path}`` (``HEAD`` and ``GET``; LFS files redirected to the CDN, as
the Hub does), served by ``standins.StandInHub`` with its repositories taken as Spaces. Point
huggingface_hub at it with ``standins.hub_online``; add files with ``add_dataset`` (the
repository's name and files)."""

from __future__ import annotations

from standins import StandInHub


class StandInSpaceHub(StandInHub):
    """The stand-in Hub with its repositories served as Spaces: the Space routes answer, the
    dataset routes of the same names do not (so a download that asked for a dataset fails)."""

    def handle(self, method: str, path: str, query: str):  # noqa: ANN201
        for space, dataset in (("/api/spaces/", "/api/datasets/"), ("/spaces/", "/datasets/")):
            if path.startswith(dataset):
                return 404, {"X-Error-Code": "RepoNotFound"}, b'{"error": "RepoNotFound"}', None
            if path.startswith(space):
                return super().handle(method, dataset + path[len(space) :], query)
        return super().handle(method, path, query)
