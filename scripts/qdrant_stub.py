"""A stand-in for a Qdrant server's gRPC API, for tests on machines without Qdrant.

No Qdrant server package exists for this machine, so the tests of the Qdrant vector store
talk gRPC to this process instead: the calls the store makes (collections: exists, create,
delete, list; points: create field index, upsert, delete, query) are decoded with the
official `qdrant-client` protobuf modules and answered by `qdrant-client`'s local mode,
which implements Qdrant's filtering and scoring in Python. The Rust code path is the one
users run against a real cluster (QDRANT_URL).

Usage: python scripts/qdrant_stub.py PORT
"""

import functools
import sys
import time
import traceback
from concurrent import futures

import grpc as grpcio
from qdrant_client import QdrantClient
from qdrant_client import grpc as g
from qdrant_client.conversions.conversion import GrpcToRest, RestToGrpc
from qdrant_client.grpc import collections_service_pb2_grpc as cs
from qdrant_client.grpc import points_service_pb2_grpc as ps
from qdrant_client.http import models as rest

db = QdrantClient(":memory:")


def logged(method):
    """Prints the traceback of a failed call (the client only sees its message)."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except Exception:
            print(f"{method.__name__} failed:\n{traceback.format_exc()}", flush=True)
            raise

    return wrapper


def completed():
    return g.PointsOperationResponse(
        result=g.UpdateResult(operation_id=0, status=g.UpdateStatus.Completed), time=0.0
    )


class Collections(cs.CollectionsServicer):
    @logged
    def CollectionExists(self, request, context):
        exists = db.collection_exists(request.collection_name)
        return g.CollectionExistsResponse(result=g.CollectionExists(exists=exists), time=0.0)

    @logged
    def Create(self, request, context):
        params = GrpcToRest.convert_vector_params(request.vectors_config.params)
        db.create_collection(request.collection_name, vectors_config=params)
        return g.CollectionOperationResponse(result=True, time=0.0)

    @logged
    def Delete(self, request, context):
        return g.CollectionOperationResponse(result=db.delete_collection(request.collection_name), time=0.0)

    @logged
    def List(self, request, context):
        names = [c.name for c in db.get_collections().collections]
        return g.ListCollectionsResponse(
            collections=[g.CollectionDescription(name=n) for n in names], time=0.0
        )


class Points(ps.PointsServicer):
    @logged
    def CreateFieldIndex(self, request, context):
        # Local mode filters without payload indexes; accepting the call is enough.
        return completed()

    @logged
    def Upsert(self, request, context):
        points = [GrpcToRest.convert_point_struct(p) for p in request.points]
        db.upsert(request.collection_name, points=points)
        return completed()

    @logged
    def Delete(self, request, context):
        selector = GrpcToRest.convert_points_selector(request.points)
        db.delete(request.collection_name, points_selector=selector)
        return completed()

    @logged
    def Query(self, request, context):
        q = GrpcToRest.convert_query_points(request)
        found = db.query_points(
            request.collection_name,
            query=q.query,
            query_filter=q.filter,
            limit=q.limit or 10,
            with_payload=True,
        )
        return g.QueryResponse(
            result=[RestToGrpc.convert_scored_point(p) for p in found.points], time=0.0
        )


def main():
    port = int(sys.argv[1])
    # One process per port: with gRPC's default SO_REUSEPORT a second stub would bind too,
    # and the kernel would spread one client's calls over two separate in-memory stores.
    server = grpcio.server(futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.so_reuseport", 0)])
    cs.add_CollectionsServicer_to_server(Collections(), server)
    ps.add_PointsServicer_to_server(Points(), server)
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    server.start()
    print(f"qdrant stub on 127.0.0.1:{port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop(0)


if __name__ == "__main__":
    main()
