"""Qdrant's gRPC API in front of Qdrant's own engine, for tests on machines without a server.

No Qdrant server package exists for this machine, so the tests of the Qdrant vector store
talk gRPC to this process. The calls are decoded with the official `qdrant-client`
protobuf modules and answered by `qdrant-edge-py`, Qdrant's embedded engine (the same
segment code as the server): HNSW graphs built by its optimizers, payload indexes
(`is_tenant` included), filtered search through those indexes, offset and score
threshold, `hnsw_ef` and exact search. One edge shard per collection, on disk under
DATA_DIR. The Rust code path is the one users run against a real cluster (QDRANT_URL).

Served: collections exists/create/get/delete/list; points create field index, upsert,
delete (ids or filter), count, query (nearest dense vector, filter, limit, offset,
score_threshold, hnsw_ef, exact). Not served, answered UNIMPLEMENTED with the call's name:
everything else (sharding, aliases, snapshots, sparse and named vectors, prefetch and
fusion queries, payload edits), because the store never calls them. What a server does
that this process does not: optimizers run here after each write on a background thread
instead of Qdrant's update workers, and there is no WAL replay across restarts (the data
directory is emptied at start).

One workaround: qdrant-edge-py 0.9 reads a boolean match value as the integer it also is in
Python, so `is_public = true` matched nothing. Each boolean payload field therefore gets a
keyword twin (`__bool__<field>`: "true"/"false") written with the point, indexed with it,
matched instead of it and never returned.

Errors use Qdrant's gRPC codes and messages: NOT_FOUND for a missing collection,
ALREADY_EXISTS for creating one twice, INVALID_ARGUMENT for a wrong vector size or a
filter the engine refuses.

Usage: python scripts/qdrant_stub.py PORT [DATA_DIR]
"""

import functools
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from concurrent import futures

import grpc as grpcio
import qdrant_edge as edge
from qdrant_client import grpc as g
from qdrant_client.conversions.conversion import GrpcToRest, RestToGrpc
from qdrant_client.grpc import collections_service_pb2_grpc as cs
from qdrant_client.grpc import points_service_pb2_grpc as ps
from qdrant_client.http import models as rest

# Qdrant's defaults for what a create call leaves out (config/config.yaml of the server).
DEFAULT_HNSW = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000, "payload_m": None}
DEFAULT_INDEXING_THRESHOLD_KB = 10000

DISTANCES = {
    g.Distance.Cosine: edge.Distance.Cosine,
    g.Distance.Euclid: edge.Distance.Euclid,
    g.Distance.Dot: edge.Distance.Dot,
    g.Distance.Manhattan: edge.Distance.Manhattan,
}


class Refused(Exception):
    """A call Qdrant would answer with an error status."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def not_found(name):
    return Refused(grpcio.StatusCode.NOT_FOUND, f"Not found: Collection `{name}` doesn't exist!")


class Collection:
    """One edge shard, its settings as created, and a lock: the engine is driven by one
    call at a time, the optimizer included."""

    def __init__(self, name, path, size, distance, hnsw, indexing_threshold_kb):
        self.name = name
        self.path = path
        self.size = size
        self.distance = distance
        self.hnsw = hnsw
        self.indexing_threshold_kb = indexing_threshold_kb
        self.lock = threading.RLock()
        self.dirty = False
        self.last_write = 0.0
        hnsw_config = edge.HnswIndexConfig(
            m=hnsw["m"],
            ef_construct=hnsw["ef_construct"],
            full_scan_threshold=hnsw["full_scan_threshold"],
            payload_m=hnsw["payload_m"],
        )
        config = edge.EdgeConfig(
            vectors=edge.EdgeVectorParams(size=size, distance=DISTANCES[distance]),
            hnsw_config=hnsw_config,
            optimizers=edge.EdgeOptimizersConfig(indexing_threshold=indexing_threshold_kb),
        )
        self.shard = edge.EdgeShard.create(path, config)
        self.field_types = {}

    def close(self):
        with self.lock:
            self.shard.close()
        shutil.rmtree(self.path, ignore_errors=True)


class Engine:
    def __init__(self, root):
        self.root = root
        self.lock = threading.Lock()
        self.collections = {}

    def get(self, name):
        with self.lock:
            found = self.collections.get(name)
        if found is None:
            raise not_found(name)
        return found

    def optimize_dirty(self):
        """What Qdrant's optimizers do after writes: build HNSW for segments past the
        indexing threshold, merge and vacuum. Only once writes pause for a second: run
        between every batch of a bulk load, the engine merged the growing segment over and
        over and kept each superseded copy on disk (22 GB for 600,000 vectors)."""
        now = time.monotonic()
        with self.lock:
            dirty = [c for c in self.collections.values() if c.dirty and now - c.last_write >= 1.0]
        for c in dirty:
            with c.lock:
                c.dirty = False
                try:
                    c.shard.optimize()
                except Exception:
                    print(f"optimizing {c.name} failed:\n{traceback.format_exc()}", flush=True)


engine = None


def served(method):
    """Turns `Refused` into Qdrant's status and prints the traceback of anything else."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except Refused as e:
            context.abort(e.code, e.message)
        except Exception as e:
            text = str(e)
            print(f"{method.__name__} failed:\n{traceback.format_exc()}", flush=True)
            # The engine's own input errors ("Vector dimension error: expected dim: 384,
            # got 3", a bad filter) are the server's BadInput.
            if "dimension" in text or "Wrong input" in text or "Bad input" in text:
                context.abort(grpcio.StatusCode.INVALID_ARGUMENT, f"Wrong input: {text}")
            context.abort(grpcio.StatusCode.INTERNAL, f"Service internal error: {text}")

    return wrapper


def unserved(name):
    def handler(self, request, context):
        context.abort(
            grpcio.StatusCode.UNIMPLEMENTED,
            f"{name} is not served by the Qdrant stand-in (scripts/qdrant_stub.py): the store never calls it",
        )

    return handler


def completed():
    return g.PointsOperationResponse(
        result=g.UpdateResult(operation_id=0, status=g.UpdateStatus.Completed), time=0.0
    )


# ---------------------------------------------------------------------------------------
# Conversions: gRPC messages -> qdrant-client's REST models (its own converters) -> edge.
# ---------------------------------------------------------------------------------------


def point_id(value):
    if isinstance(value, int):
        return value
    return uuid.UUID(str(value))


def wire_id(value):
    return value if isinstance(value, int) else str(value)


BOOL_TWIN = "__bool__"


def with_bool_twins(payload):
    twins = {BOOL_TWIN + k: ("true" if v else "false") for k, v in payload.items() if isinstance(v, bool)}
    return {**payload, **twins}


def without_bool_twins(payload):
    return {k: v for k, v in (payload or {}).items() if not k.startswith(BOOL_TWIN)}


def bool_twin(c):
    """A boolean match on its keyword twin (see the module's note), else None."""
    m = c.match
    if isinstance(m, rest.MatchValue) and isinstance(m.value, bool):
        return edge.FieldCondition(BOOL_TWIN + c.key, match=edge.MatchValue("true" if m.value else "false"))
    if isinstance(m, (rest.MatchAny, rest.MatchExcept)):
        values = m.any if isinstance(m, rest.MatchAny) else m.except_
        if values and all(isinstance(v, bool) for v in values):
            words = ["true" if v else "false" for v in values]
            match = edge.MatchAny(words) if isinstance(m, rest.MatchAny) else edge.MatchExcept(words)
            return edge.FieldCondition(BOOL_TWIN + c.key, match=match)
    return None


def edge_match(m):
    if isinstance(m, rest.MatchValue):
        return edge.MatchValue(m.value)
    if isinstance(m, rest.MatchAny):
        return edge.MatchAny(list(m.any))
    if isinstance(m, rest.MatchExcept):
        return edge.MatchExcept(list(m.except_))
    if isinstance(m, rest.MatchText):
        return edge.MatchText(m.text)
    raise Refused(grpcio.StatusCode.UNIMPLEMENTED, f"match {type(m).__name__} is not served by the stand-in")


def edge_condition(c):
    if isinstance(c, rest.Filter):
        return edge_filter(c)
    if isinstance(c, rest.FieldCondition):
        twin = bool_twin(c) if c.match is not None else None
        if twin is not None:
            return twin
        if c.match is not None:
            return edge.FieldCondition(c.key, match=edge_match(c.match))
        if c.range is not None:
            r = c.range
            return edge.FieldCondition(c.key, range=edge.RangeFloat(gt=r.gt, gte=r.gte, lt=r.lt, lte=r.lte))
        if c.is_empty is not None:
            return edge.FieldCondition(c.key, is_empty=c.is_empty)
        if c.is_null is not None:
            return edge.FieldCondition(c.key, is_null=c.is_null)
    if isinstance(c, rest.IsEmptyCondition):
        return edge.IsEmptyCondition(c.is_empty.key)
    if isinstance(c, rest.IsNullCondition):
        return edge.IsNullCondition(c.is_null.key)
    if isinstance(c, rest.HasIdCondition):
        return edge.HasIdCondition({point_id(i) for i in c.has_id})
    if isinstance(c, rest.NestedCondition):
        return edge.NestedCondition(c.nested.key, edge_filter(c.nested.filter))
    raise Refused(grpcio.StatusCode.UNIMPLEMENTED, f"condition {type(c).__name__} is not served by the stand-in")


def conditions(cs_):
    if cs_ is None:
        return None
    if not isinstance(cs_, list):
        cs_ = [cs_]
    return [edge_condition(c) for c in cs_] or None


def edge_filter(f):
    if f is None:
        return None
    min_should = None
    if f.min_should is not None:
        min_should = edge.MinShould(conditions(f.min_should.conditions) or [], f.min_should.min_count)
    return edge.Filter(
        must=conditions(f.must), should=conditions(f.should), must_not=conditions(f.must_not), min_should=min_should
    )


def grpc_filter(f):
    return edge_filter(GrpcToRest.convert_filter(f))


def hnsw_settings(*diffs):
    """Qdrant's defaults, overridden by the collection's diff, then the vector's."""
    settings = dict(DEFAULT_HNSW)
    for diff in diffs:
        for field in ("m", "ef_construct", "full_scan_threshold", "payload_m"):
            if diff is not None and diff.HasField(field):
                settings[field] = getattr(diff, field)
    return settings


def schema(field_type, params):
    kind = params.WhichOneof("index_params") if params is not None else None
    if field_type == g.FieldType.FieldTypeKeyword:
        if kind == "keyword_index_params":
            k = params.keyword_index_params
            return edge.KeywordIndexParams(is_tenant=k.is_tenant if k.HasField("is_tenant") else None)
        return edge.PayloadSchemaType.Keyword
    simple = {
        g.FieldType.FieldTypeInteger: edge.PayloadSchemaType.Integer,
        g.FieldType.FieldTypeFloat: edge.PayloadSchemaType.Float,
        g.FieldType.FieldTypeGeo: edge.PayloadSchemaType.Geo,
        g.FieldType.FieldTypeText: edge.PayloadSchemaType.Text,
        g.FieldType.FieldTypeBool: edge.PayloadSchemaType.Bool,
        g.FieldType.FieldTypeDatetime: edge.PayloadSchemaType.Datetime,
        g.FieldType.FieldTypeUuid: edge.PayloadSchemaType.Uuid,
    }
    return simple[field_type]


class Collections(cs.CollectionsServicer):
    @served
    def CollectionExists(self, request, context):
        with engine.lock:
            exists = request.collection_name in engine.collections
        return g.CollectionExistsResponse(result=g.CollectionExists(exists=exists), time=0.0)

    @served
    def Create(self, request, context):
        name = request.collection_name
        if request.vectors_config.WhichOneof("config") != "params":
            raise Refused(grpcio.StatusCode.UNIMPLEMENTED, "named vectors are not served by the stand-in")
        params = request.vectors_config.params
        if params.size == 0:
            raise Refused(grpcio.StatusCode.INVALID_ARGUMENT, "Wrong input: Vector size must be positive")
        hnsw = hnsw_settings(
            request.hnsw_config if request.HasField("hnsw_config") else None,
            params.hnsw_config if params.HasField("hnsw_config") else None,
        )
        threshold = DEFAULT_INDEXING_THRESHOLD_KB
        if request.HasField("optimizers_config") and request.optimizers_config.HasField("indexing_threshold"):
            threshold = request.optimizers_config.indexing_threshold
        with engine.lock:
            if name in engine.collections:
                raise Refused(grpcio.StatusCode.ALREADY_EXISTS, f"Wrong input: Collection `{name}` already exists!")
            path = os.path.join(engine.root, uuid.uuid4().hex)
            engine.collections[name] = Collection(name, path, params.size, params.distance, hnsw, threshold)
        return g.CollectionOperationResponse(result=True, time=0.0)

    @served
    def Get(self, request, context):
        c = engine.get(request.collection_name)
        with c.lock:
            info = c.shard.info()
        payload_schema = {}
        for field, index in info.payload_schema.items():
            if field.startswith(BOOL_TWIN):
                continue
            kind = index.data_type
            data_type = {
                edge.PayloadSchemaType.Keyword: g.PayloadSchemaType.Keyword,
                edge.PayloadSchemaType.Integer: g.PayloadSchemaType.Integer,
                edge.PayloadSchemaType.Float: g.PayloadSchemaType.Float,
                edge.PayloadSchemaType.Geo: g.PayloadSchemaType.Geo,
                edge.PayloadSchemaType.Text: g.PayloadSchemaType.Text,
                edge.PayloadSchemaType.Bool: g.PayloadSchemaType.Bool,
                edge.PayloadSchemaType.Datetime: g.PayloadSchemaType.Datetime,
                edge.PayloadSchemaType.Uuid: g.PayloadSchemaType.Uuid,
            }[kind]
            params = None
            if isinstance(index.params, edge.KeywordIndexParams) and index.params.is_tenant is not None:
                params = g.PayloadIndexParams(
                    keyword_index_params=g.KeywordIndexParams(is_tenant=index.params.is_tenant)
                )
            payload_schema[field] = g.PayloadSchemaInfo(data_type=data_type, params=params, points=index.points)
        hnsw = g.HnswConfigDiff(
            m=c.hnsw["m"],
            ef_construct=c.hnsw["ef_construct"],
            full_scan_threshold=c.hnsw["full_scan_threshold"],
            max_indexing_threads=0,
            on_disk=False,
        )
        if c.hnsw["payload_m"] is not None:
            hnsw.payload_m = c.hnsw["payload_m"]
        # The server answers every setting, its defaults included (clients require them).
        config = g.CollectionConfig(
            params=g.CollectionParams(
                vectors_config=g.VectorsConfig(params=g.VectorParams(size=c.size, distance=c.distance)),
                shard_number=1,
                replication_factor=1,
                write_consistency_factor=1,
                on_disk_payload=True,
            ),
            hnsw_config=hnsw,
            optimizer_config=g.OptimizersConfigDiff(
                deleted_threshold=0.2,
                vacuum_min_vector_number=1000,
                default_segment_number=0,
                indexing_threshold=c.indexing_threshold_kb,
                flush_interval_sec=5,
            ),
            wal_config=g.WalConfigDiff(wal_capacity_mb=32, wal_segments_ahead=0),
        )
        result = g.CollectionInfo(
            status=g.CollectionStatus.Yellow if c.dirty else g.CollectionStatus.Green,
            optimizer_status=g.OptimizerStatus(ok=True),
            segments_count=info.segments_count,
            points_count=info.points_count,
            indexed_vectors_count=info.indexed_vectors_count,
            config=config,
            payload_schema=payload_schema,
        )
        return g.GetCollectionInfoResponse(result=result, time=0.0)

    @served
    def Delete(self, request, context):
        with engine.lock:
            found = engine.collections.pop(request.collection_name, None)
        if found is not None:
            found.close()
        return g.CollectionOperationResponse(result=found is not None, time=0.0)

    @served
    def List(self, request, context):
        with engine.lock:
            names = sorted(engine.collections)
        return g.ListCollectionsResponse(collections=[g.CollectionDescription(name=n) for n in names], time=0.0)


class Points(ps.PointsServicer):
    @served
    def CreateFieldIndex(self, request, context):
        c = engine.get(request.collection_name)
        params = request.field_index_params if request.HasField("field_index_params") else None
        with c.lock:
            c.shard.update(edge.UpdateOperation.create_field_index(request.field_name, schema(request.field_type, params)))
            if request.field_type == g.FieldType.FieldTypeBool:
                twin = BOOL_TWIN + request.field_name
                c.shard.update(edge.UpdateOperation.create_field_index(twin, edge.PayloadSchemaType.Keyword))
        return completed()

    @served
    def Upsert(self, request, context):
        c = engine.get(request.collection_name)
        points = []
        for p in request.points:
            r = GrpcToRest.convert_point_struct(p)
            if not isinstance(r.vector, list):
                raise Refused(grpcio.StatusCode.UNIMPLEMENTED, "named or sparse vectors are not served by the stand-in")
            if len(r.vector) != c.size:
                raise Refused(
                    grpcio.StatusCode.INVALID_ARGUMENT,
                    f"Wrong input: Vector dimension error: expected dim: {c.size}, got {len(r.vector)}",
                )
            points.append(edge.Point(point_id(r.id), r.vector, with_bool_twins(r.payload or {})))
        with c.lock:
            c.shard.update(edge.UpdateOperation.upsert_points(points))
            c.dirty = True
            c.last_write = time.monotonic()
        return completed()

    @served
    def Delete(self, request, context):
        c = engine.get(request.collection_name)
        selector = GrpcToRest.convert_points_selector(request.points)
        if isinstance(selector, rest.FilterSelector):
            op = edge.UpdateOperation.delete_points_by_filter(edge_filter(selector.filter))
        else:
            op = edge.UpdateOperation.delete_points([point_id(i) for i in selector.points])
        with c.lock:
            c.shard.update(op)
            c.dirty = True
            c.last_write = time.monotonic()
        return completed()

    @served
    def Count(self, request, context):
        c = engine.get(request.collection_name)
        f = grpc_filter(request.filter) if request.HasField("filter") else None
        with c.lock:
            n = c.shard.count(edge.CountRequest(filter=f, exact=True))
        return g.CountResponse(result=g.CountResult(count=n), time=0.0)

    @served
    def Query(self, request, context):
        c = engine.get(request.collection_name)
        if request.prefetch or request.HasField("lookup_from") or request.using:
            raise Refused(grpcio.StatusCode.UNIMPLEMENTED, "prefetch, lookup_from and named vectors are not served")
        query = None
        if request.HasField("query"):
            if request.query.WhichOneof("variant") != "nearest":
                raise Refused(grpcio.StatusCode.UNIMPLEMENTED, "only nearest queries are served by the stand-in")
            vector = GrpcToRest.convert_vector_input(request.query.nearest)
            if not isinstance(vector, list):
                raise Refused(grpcio.StatusCode.UNIMPLEMENTED, "only dense vectors are served by the stand-in")
            if len(vector) != c.size:
                raise Refused(
                    grpcio.StatusCode.INVALID_ARGUMENT,
                    f"Wrong input: Vector dimension error: expected dim: {c.size}, got {len(vector)}",
                )
            query = edge.Query.Nearest(vector)
        params = None
        if request.HasField("params"):
            p = request.params
            params = edge.SearchParams(hnsw_ef=p.hnsw_ef if p.HasField("hnsw_ef") else None, exact=p.exact)
        with_payload = True
        if request.HasField("with_payload"):
            with_payload = GrpcToRest.convert_with_payload_selector(request.with_payload)
            if not isinstance(with_payload, bool):
                with_payload = True
        found_request = edge.QueryRequest(
            limit=request.limit if request.HasField("limit") else 10,
            offset=request.offset if request.HasField("offset") else None,
            query=query,
            filter=grpc_filter(request.filter) if request.HasField("filter") else None,
            score_threshold=request.score_threshold if request.HasField("score_threshold") else None,
            params=params,
            with_payload=with_payload,
        )
        with c.lock:
            found = c.shard.query(found_request)
        result = [
            RestToGrpc.convert_scored_point(
                rest.ScoredPoint(id=wire_id(p.id), version=p.version, score=p.score, payload=without_bool_twins(p.payload))
            )
            for p in found
        ]
        return g.QueryResponse(result=result, time=0.0)


def fill_unserved(servicer, base):
    for name in dir(base):
        if name[0].isupper() and name not in servicer.__dict__:
            setattr(servicer, name, unserved(name))


def main():
    global engine
    port = int(sys.argv[1])
    root = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="qdrant-stand-in-")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    engine = Engine(root)
    fill_unserved(Collections, cs.CollectionsServicer)
    fill_unserved(Points, ps.PointsServicer)
    # One process per port: with gRPC's default SO_REUSEPORT a second stub would bind too,
    # and the kernel would spread one client's calls over two separate engines.
    server = grpcio.server(futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.so_reuseport", 0)])
    cs.add_CollectionsServicer_to_server(Collections(), server)
    ps.add_PointsServicer_to_server(Points(), server)
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    server.start()
    print(f"qdrant stub on 127.0.0.1:{port} (qdrant-edge engine in {root})", flush=True)
    try:
        while True:
            engine.optimize_dirty()
            time.sleep(0.2)
    except KeyboardInterrupt:
        server.stop(0)


if __name__ == "__main__":
    main()
