"""Methods (rows of Table 1) and the model roles they train.

A *model role* is a network the DAG trains (``mdm``: class-conditional baseline, ``mdm_bad``: the smaller,
shorter-trained guide for autoguidance, ``kaleido``: class + latent with its AR prior). A *method* is a model
role plus a guidance scheme (and, for autoguidance, the guiding role; with ``interval``, the weight applies only
within the experiment's ``guidance_interval``). Adding a method = one registry line.
"""

from __future__ import annotations

from dataclasses import dataclass

from metrics.registry import Registry


@dataclass(frozen=True)
class ModelRole:
    name: str
    uses_latent: bool
    #: trains for ``train.bad_model_steps_fraction`` of the steps (autoguidance's "shorter" guide)
    shortened: bool = False


@dataclass(frozen=True)
class Method:
    name: str
    model: str
    guidance: str
    guide_model: str | None = None
    interval: bool = False

    @property
    def roles(self) -> tuple[str, ...]:
        return (self.model,) + ((self.guide_model,) if self.guide_model else ())


ROLES: Registry[ModelRole] = Registry("model role")
METHODS: Registry[Method] = Registry("method")

for _role in (ModelRole("mdm", False), ModelRole("mdm_bad", False, shortened=True), ModelRole("kaleido", True)):
    ROLES.register(_role.name)(_role)

for _method in (
    Method("mdm", "mdm", "cfg"),
    Method("mdm_cads", "mdm", "cads"),
    Method("mdm_autoguidance", "mdm", "autoguidance", guide_model="mdm_bad"),
    Method("kaleido", "kaleido", "cfg"),
    Method("kaleido_cads", "kaleido", "cads"),
    Method("mdm_interval", "mdm", "cfg", interval=True),
    Method("kaleido_interval", "kaleido", "cfg", interval=True),
):
    METHODS.register(_method.name)(_method)

#: the latent wildcard value of roles/methods without latents
NO_LATENT = "none"


def uses_latent(method: str) -> bool:
    return ROLES.get(METHODS.get(method).model).uses_latent
