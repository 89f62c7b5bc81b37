//! Many parameters as one flat vector: the layout of a weight-decay group's gradients,
//! parameters and AdamW moments, so that clipping and the update are a handful of tensor
//! operations for the whole model instead of a dozen per parameter. On the GPU backends every
//! operation costs the host about the same work (autodiff, Burn's fusion, a launch) whatever
//! its size, and for a model this small that work, not the card, set the update's time.
//!
//! A vector holds the parameters' values flattened, in module order, each starting at a multiple
//! of [`ALIGN`] elements with zeros in the gaps: a parameter cut back out of the f32 vector is
//! then a view on the GPU backends, not a copy (CubeCL makes a view only at a multiple of the
//! device's alignment, 512 bytes on CUDA, 128 f32 elements). Of the half-precision copy, a
//! parameter at an odd multiple of 128 is copied out: aligning to 256 elements instead would
//! add a gap after every vector of a hidden size of 128, and each gap is one more piece to
//! concatenate, a kernel of its own on the GPU backends, in every gradient and parameter vector.
//! The vectors are made and cut by the kernels' [`Kernels::flatten_into`] and [`Kernels::split`],
//! one operation each on the GPU backends (the per-parameter reshapes and slices inside it).

use std::ops::Range;

use berthash_kernels::Kernels;
use burn::module::ParamId;
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::TensorPrimitive;

/// Elements from one segment's start to the next's.
pub const ALIGN: usize = 128;

/// One parameter's place in a flat vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub id: ParamId,
    pub offset: usize,
    /// The parameter's shape.
    pub dims: Vec<usize>,
}

impl Segment {
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Where each parameter of a group lies in the group's flat vectors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    segments: Vec<Segment>,
    /// The vectors' length: the last segment's end rounded up to [`ALIGN`].
    len: usize,
}

impl Layout {
    /// Appends a parameter of shape `dims`.
    pub fn push(&mut self, id: ParamId, dims: Vec<usize>) {
        let segment = Segment {
            id,
            offset: self.len,
            dims,
        };
        self.len = segment.range().end.next_multiple_of(ALIGN);
        self.segments.push(segment);
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// One flat vector of `pieces`, each segment's tensor in its own shape, in the segments'
    /// order ([`Kernels::flatten_into`]: one operation on the GPU backends).
    pub fn concat<B: Kernels>(&self, pieces: Vec<FloatTensor<B>>) -> Tensor<B, 1> {
        assert_eq!(
            pieces.len(),
            self.segments.len(),
            "one piece per segment of the layout"
        );
        let flat = B::flatten_into(pieces, &self.offsets(), self.len);
        Tensor::from_primitive(TensorPrimitive::Float(flat))
    }

    /// Each segment's values cut out of `flat`, in the parameter's shape ([`Kernels::split`]:
    /// views on the GPU backends, one operation).
    pub fn split<B: Kernels>(&self, flat: Tensor<B, 1>) -> Vec<FloatTensor<B>> {
        let shapes: Vec<Shape> = self
            .segments
            .iter()
            .map(|s| Shape::from(s.dims.clone()))
            .collect();
        B::split(flat.into_primitive().tensor(), &self.offsets(), &shapes)
    }

    fn offsets(&self) -> Vec<usize> {
        self.segments.iter().map(|s| s.offset).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn segments_start_aligned_and_cut_back_out_whole() {
        let device = Default::default();
        let (a, b) = (ParamId::new(), ParamId::new());
        let mut layout = Layout::default();
        layout.push(a, vec![3, 2]);
        layout.push(b, vec![ALIGN + 1]);
        assert_eq!(layout.segments()[1].offset, ALIGN);
        assert_eq!(layout.len(), 3 * ALIGN);

        let x = Tensor::<Flex, 2>::from_floats([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], &device);
        let y = Tensor::<Flex, 1>::ones([ALIGN + 1], &device);
        let flat = layout.concat::<Flex>(vec![
            x.clone().into_primitive().tensor(),
            y.clone().into_primitive().tensor(),
        ]);
        assert_eq!(flat.dims(), [3 * ALIGN]);
        // The gaps are zeros: the vector's sum is the parameters' sum.
        assert_eq!(flat.clone().sum().into_scalar(), 21.0 + (ALIGN + 1) as f32);
        let [x_back, y_back] = <[_; 2]>::try_from(layout.split(flat)).unwrap();
        let x_back = Tensor::<Flex, 2>::from_primitive(TensorPrimitive::Float(x_back));
        let y_back = Tensor::<Flex, 1>::from_primitive(TensorPrimitive::Float(y_back));
        x_back.into_data().assert_eq(&x.into_data(), true);
        y_back.into_data().assert_eq(&y.into_data(), true);
    }
}
