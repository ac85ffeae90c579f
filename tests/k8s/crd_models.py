"""The fields of HTTPRoute and VirtualService that zdp writes, as pydantic models.

kubernetes-validate has no schemas for custom resources (it only warns), and no PyPI package
ships these CRDs offline, so the constraints of the fields zdp uses are written down here from
the published API definitions: Gateway API v1 (HTTPRoute, standard channel: maxItems, patterns,
weight 0..1000000, and the CEL rule "Must have port for Service reference") and Istio
networking v1 (VirtualService: hosts required, destination host required, weights that add up
to 100 when a route has several destinations). Unknown fields are refused: a field zdp starts
writing must be added here, from the API definition, on purpose.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
GROUP = r"^$|" + DNS_SUBDOMAIN
KIND = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

ObjectName = Annotated[str, Field(min_length=1, max_length=253)]
Namespace = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Metadata(_Strict):
    name: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN)]
    namespace: Namespace | None = None
    labels: dict[str, str] = Field(default_factory=dict)


# --------------------------------------------------------------------------- Gateway API v1


class ParentReference(_Strict):
    group: Annotated[str, Field(max_length=253, pattern=GROUP)] = "gateway.networking.k8s.io"
    kind: Annotated[str, Field(min_length=1, max_length=63, pattern=KIND)] = "Gateway"
    namespace: Namespace | None = None
    name: ObjectName
    sectionName: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None


class HTTPBackendRef(_Strict):
    group: Annotated[str, Field(max_length=253, pattern=GROUP)] = ""
    kind: Annotated[str, Field(min_length=1, max_length=63, pattern=KIND)] = "Service"
    name: ObjectName
    namespace: Namespace | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    weight: Annotated[int, Field(ge=0, le=1_000_000)] = 1

    @model_validator(mode="after")
    def _service_needs_port(self) -> HTTPBackendRef:
        if self.group == "" and self.kind == "Service" and self.port is None:
            raise ValueError("Must have port for Service reference")
        return self


class HTTPRouteRule(_Strict):
    backendRefs: Annotated[list[HTTPBackendRef], Field(max_length=16)] = Field(default_factory=list)


class HTTPRouteSpec(_Strict):
    parentRefs: Annotated[list[ParentReference], Field(max_length=32)] = Field(default_factory=list)
    rules: Annotated[list[HTTPRouteRule], Field(max_length=16)] = Field(default_factory=list)


class HTTPRoute(_Strict):
    apiVersion: Literal["gateway.networking.k8s.io/v1"]
    kind: Literal["HTTPRoute"]
    metadata: Metadata
    spec: HTTPRouteSpec


# --------------------------------------------------------------------------- Istio v1


class PortSelector(_Strict):
    number: Annotated[int, Field(ge=1, le=65535)]


class Destination(_Strict):
    host: Annotated[str, Field(min_length=1)]
    port: PortSelector | None = None


class HTTPRouteDestination(_Strict):
    destination: Destination
    weight: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None


class HTTPRouteIstio(_Strict):
    route: Annotated[list[HTTPRouteDestination], Field(min_length=1)]

    @model_validator(mode="after")
    def _weights_add_up(self) -> HTTPRouteIstio:
        if len(self.route) > 1 and sum(d.weight or 0 for d in self.route) != 100:
            raise ValueError("the weights of a route's destinations must add up to 100")
        return self


class VirtualServiceSpec(_Strict):
    hosts: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    http: list[HTTPRouteIstio] = Field(default_factory=list)


class VirtualService(_Strict):
    apiVersion: Literal["networking.istio.io/v1"]
    kind: Literal["VirtualService"]
    metadata: Metadata
    spec: VirtualServiceSpec
