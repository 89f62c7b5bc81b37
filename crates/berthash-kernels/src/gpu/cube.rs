//! Running a CubeCL kernel on a GPU backend's tensors: one operation of Burn's fusion stream
//! when fusion is on (a `CustomOpIr`, as burn-vision's kernels do), a direct call on Burn's
//! CubeCL backend when it is off.

use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::DType;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::{CubeCount, CubeDim};

/// Kernel launches (or Burn ops of the CubeCL backend) over the CubeCL tensors of their
/// inputs, returning their outputs.
pub type Launch<R> = Arc<dyn Fn(Vec<CubeTensor<R>>) -> Vec<CubeTensor<R>> + Send + Sync>;

/// A GPU backend whose float tensors a CubeCL kernel can run on.
pub trait CubeKernels: Backend {
    type Runtime: CubeRuntime;
    /// Burn's CubeCL backend under it, on whose tensors the launches run.
    type Cube: Backend<FloatTensorPrimitive = CubeTensor<Self::Runtime>>;

    /// Runs `launch` on `inputs`. `outputs` gives each output's shape and type, which Burn's
    /// fusion stream records before the kernel runs; `launch` must return tensors of exactly
    /// those. `name` names the operation in Burn's logs.
    fn custom(
        name: &'static str,
        inputs: Vec<FloatTensor<Self>>,
        outputs: Vec<(Shape, DType)>,
        launch: Launch<Self::Runtime>,
    ) -> Vec<FloatTensor<Self>>;
}

/// [`CubeKernels::custom`] with a fixed number of inputs and outputs.
pub fn custom<B: CubeKernels, const I: usize, const O: usize>(
    name: &'static str,
    inputs: [FloatTensor<B>; I],
    outputs: [(Shape, DType); O],
    launch: impl Fn([CubeTensor<B::Runtime>; I]) -> [CubeTensor<B::Runtime>; O] + Send + Sync + 'static,
) -> [FloatTensor<B>; O] {
    let launch: Launch<B::Runtime> = Arc::new(move |tensors| {
        let tensors = tensors.try_into().expect("one tensor per input");
        launch(tensors).into()
    });
    B::custom(name, inputs.into(), outputs.into(), launch)
        .try_into()
        .expect("one tensor per output")
}

/// A contiguous tensor of `shape` and `dtype` on `like`'s device, its values unset.
pub fn empty<R: CubeRuntime>(like: &CubeTensor<R>, shape: Shape, dtype: DType) -> CubeTensor<R> {
    empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), shape, dtype)
}

/// `(cube count, cube dim)` for one unit per each of `units`.
pub fn grid<R: CubeRuntime>(like: &CubeTensor<R>, units: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new(&like.client, units);
    (calculate_cube_count_elemwise(&like.client, units, dim), dim)
}

#[cfg(not(feature = "fusion"))]
impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> CubeKernels
    for CubeBackend<R, F, I, BT>
{
    type Runtime = R;
    type Cube = Self;

    fn custom(
        _name: &'static str,
        inputs: Vec<FloatTensor<Self>>,
        _outputs: Vec<(Shape, DType)>,
        launch: Launch<R>,
    ) -> Vec<FloatTensor<Self>> {
        launch(inputs)
    }
}

#[cfg(feature = "fusion")]
mod fused {
    use super::*;
    use burn_cubecl::fusion::FusionCubeRuntime;
    use burn_fusion::stream::{Operation, OperationStreams};
    use burn_fusion::{Fusion, FusionBackend, FusionRuntime};
    use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};
    use core::marker::PhantomData;

    /// The recorded operation: its description (the tensors' ids) and the launch, on the
    /// tensors of the CubeCL backend `C`.
    struct Custom<C: FusionBackend, R: CubeRuntime> {
        desc: CustomOpIr,
        launch: Launch<R>,
        cube: PhantomData<C>,
    }

    impl<C: FusionBackend, R: CubeRuntime> core::fmt::Debug for Custom<C, R> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("Custom").field("desc", &self.desc).finish()
        }
    }

    impl<R, F, I, BT> Operation<FusionCubeRuntime<R>> for Custom<CubeBackend<R, F, I, BT>, R>
    where
        R: CubeRuntime,
        F: FloatElement,
        I: IntElement,
        BT: BoolElement,
    {
        fn execute(
            &self,
            handles: &mut HandleContainer<<FusionCubeRuntime<R> as FusionRuntime>::FusionHandle>,
        ) {
            let tensors = self
                .desc
                .inputs
                .iter()
                .map(|input| handles.get_float_tensor::<CubeBackend<R, F, I, BT>>(input))
                .collect();
            let outputs = (self.launch)(tensors);
            assert_eq!(outputs.len(), self.desc.outputs.len(), "{}", self.desc.id);
            for (output, tensor) in self.desc.outputs.iter().zip(outputs) {
                handles.register_float_tensor::<CubeBackend<R, F, I, BT>>(&output.id, tensor);
            }
        }
    }

    impl<R, F, I, BT> CubeKernels for Fusion<CubeBackend<R, F, I, BT>>
    where
        R: CubeRuntime,
        F: FloatElement,
        I: IntElement,
        BT: BoolElement,
    {
        type Runtime = R;
        type Cube = CubeBackend<R, F, I, BT>;

        fn custom(
            name: &'static str,
            inputs: Vec<FloatTensor<Self>>,
            outputs: Vec<(Shape, DType)>,
            launch: Launch<R>,
        ) -> Vec<FloatTensor<Self>> {
            let client = inputs[0].client.clone();
            let streams = OperationStreams::with_inputs(&inputs);
            let outputs: Vec<TensorIr> = outputs
                .into_iter()
                .map(|(shape, dtype)| TensorIr::uninit(client.create_empty_handle(), shape, dtype))
                .collect();
            let inputs: Vec<TensorIr> = inputs.into_iter().map(|input| input.into_ir()).collect();
            let desc = CustomOpIr::new(name, &inputs, &outputs);
            let operation = Custom::<Self::Cube, R> {
                desc: desc.clone(),
                launch,
                cube: PhantomData,
            };
            client.register(streams, OperationIr::Custom(desc), operation)
        }
    }
}
