//! DICOM headers of the synthetic MR series ([`super`]): vendor-like
//! protocols (names, timing) per channel and the attribute sets of one
//! classic MR Image Storage instance or one Enhanced MR Image Storage
//! instance holding every frame.

use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::Stack;
use crate::ai::dcm::{self, put_ds, put_empty, put_seq, put_str, put_us, Channel};
use crate::ai::grid::{cross, Vec3};

/// Vendor-like acquisition parameters of one series.
pub(super) struct Protocol {
    pub(super) description: &'static str,
    pub(super) protocol: &'static str,
    pub(super) sequence: &'static str,
    pub(super) scanning: &'static str,
    pub(super) variant: &'static str,
    pub(super) acq_type: &'static str,
    pub(super) tr: f64,
    pub(super) te: f64,
    pub(super) ti: Option<f64>,
    pub(super) flip: f64,
    pub(super) number: i32,
    /// Stored-value offset (with a matching negative intercept) to exercise the modality LUT.
    pub(super) offset: u16,
}

pub(super) fn protocol(ch: Channel) -> Protocol {
    match ch {
        Channel::T1 => Protocol {
            description: "t1_mprage_tra_iso",
            protocol: "t1_mprage_tra_iso",
            sequence: "*tfl3d1_16ns",
            scanning: "GR\\IR",
            variant: "SK\\SP\\MP",
            acq_type: "3D",
            tr: 2300.0,
            te: 2.32,
            ti: Some(900.0),
            flip: 8.0,
            number: 2,
            offset: 0,
        },
        Channel::T1ce => Protocol {
            description: "t1_mprage_tra_iso_POST",
            protocol: "t1_mprage_tra_iso_post",
            sequence: "*tfl3d1_16ns",
            scanning: "GR\\IR",
            variant: "SK\\SP\\MP",
            acq_type: "3D",
            tr: 2300.0,
            te: 2.32,
            ti: Some(900.0),
            flip: 8.0,
            number: 6,
            offset: 0,
        },
        Channel::T2 => Protocol {
            description: "t2_tse_tra",
            protocol: "t2_tse_tra",
            sequence: "*tse2d1_15",
            scanning: "SE",
            variant: "SK\\SP\\OSP",
            acq_type: "2D",
            tr: 5000.0,
            te: 98.0,
            ti: None,
            flip: 150.0,
            number: 3,
            offset: 100,
        },
        Channel::Flair => Protocol {
            description: "t2_tirm_tra_dark-fluid",
            protocol: "t2_tirm_tra_dark-fluid",
            sequence: "*tir2d1_21",
            scanning: "SE\\IR",
            variant: "SK\\SP\\MP\\OSP",
            acq_type: "2D",
            tr: 9000.0,
            te: 81.0,
            ti: Some(2500.0),
            flip: 150.0,
            number: 4,
            offset: 0,
        },
    }
}

/// Everything shared by the instances of one series.
pub(super) struct SeriesHeader<'a> {
    pub(super) study_uid: &'a str,
    pub(super) series_uid: &'a str,
    pub(super) for_uid: &'a str,
    pub(super) patient_id: &'a str,
    pub(super) patient_name: &'a str,
    pub(super) channel: Channel,
    pub(super) proto: &'a Protocol,
    pub(super) spacing: [f64; 3],
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) slope: f64,
    pub(super) intercept: f64,
    pub(super) vmax: f64,
    pub(super) seed: u64,
}

impl SeriesHeader<'_> {
    /// Patient, study, series, frame of reference, equipment and MR attributes.
    fn common(&self, sop_class: &str, sop: &str) -> InMemDicomObject {
        let p = self.proto;
        let mut o = InMemDicomObject::new_empty();
        put_str(&mut o, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100");
        put_str(&mut o, tags::SOP_CLASS_UID, VR::UI, sop_class);
        put_str(&mut o, tags::SOP_INSTANCE_UID, VR::UI, sop);
        let time = format!("{:06}", 90000 + 100 * p.number);
        for (tag, vr, v) in [
            (tags::STUDY_DATE, VR::DA, "20240101"),
            (tags::SERIES_DATE, VR::DA, "20240101"),
            (tags::CONTENT_DATE, VR::DA, "20240101"),
            (tags::STUDY_TIME, VR::TM, "090000"),
            (tags::SERIES_TIME, VR::TM, time.as_str()),
            (tags::CONTENT_TIME, VR::TM, time.as_str()),
            (tags::ACCESSION_NUMBER, VR::SH, "GLIA-SYNTH"),
            (tags::MODALITY, VR::CS, "MR"),
            (tags::MANUFACTURER, VR::LO, "Glia synthetic phantom"),
            (
                tags::INSTITUTION_NAME,
                VR::LO,
                "Synthetic data, not a patient",
            ),
            (
                tags::STUDY_DESCRIPTION,
                VR::LO,
                "MRI BRAIN W/WO CONTRAST (SYNTHETIC)",
            ),
            (tags::SERIES_DESCRIPTION, VR::LO, p.description),
            (tags::MANUFACTURER_MODEL_NAME, VR::LO, "PhantomScan 3T"),
            (tags::PATIENT_NAME, VR::PN, self.patient_name),
            (tags::PATIENT_ID, VR::LO, self.patient_id),
            (tags::PATIENT_SEX, VR::CS, "O"),
            (tags::PATIENT_AGE, VR::AS, "050Y"),
            (tags::BODY_PART_EXAMINED, VR::CS, "HEAD"),
            (tags::SCANNING_SEQUENCE, VR::CS, p.scanning),
            (tags::SEQUENCE_VARIANT, VR::CS, p.variant),
            (tags::MR_ACQUISITION_TYPE, VR::CS, p.acq_type),
            (tags::SEQUENCE_NAME, VR::SH, p.sequence),
            (tags::PROTOCOL_NAME, VR::LO, p.protocol),
            (tags::PATIENT_POSITION, VR::CS, "HFS"),
            (tags::STUDY_INSTANCE_UID, VR::UI, self.study_uid),
            (tags::SERIES_INSTANCE_UID, VR::UI, self.series_uid),
            (tags::STUDY_ID, VR::SH, "1"),
            (tags::FRAME_OF_REFERENCE_UID, VR::UI, self.for_uid),
            (tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        ] {
            put_str(&mut o, tag, vr, v);
        }
        put_empty(&mut o, tags::PATIENT_BIRTH_DATE, VR::DA);
        put_empty(&mut o, tags::REFERRING_PHYSICIAN_NAME, VR::PN);
        put_empty(&mut o, tags::POSITION_REFERENCE_INDICATOR, VR::LO);
        put_empty(&mut o, tags::SCAN_OPTIONS, VR::CS);
        put_str(&mut o, tags::SERIES_NUMBER, VR::IS, &p.number.to_string());
        put_str(
            &mut o,
            tags::DEVICE_SERIAL_NUMBER,
            VR::LO,
            &format!("SYNTH-{}", self.seed),
        );
        put_str(
            &mut o,
            tags::SOFTWARE_VERSIONS,
            VR::LO,
            env!("CARGO_PKG_VERSION"),
        );
        put_ds(&mut o, tags::MAGNETIC_FIELD_STRENGTH, &[3.0]);
        put_ds(&mut o, tags::FLIP_ANGLE, &[p.flip]);
        if sop_class == dcm::MR_IMAGE_STORAGE {
            // Enhanced MR carries timing in functional groups instead.
            put_ds(&mut o, tags::REPETITION_TIME, &[p.tr]);
            put_ds(&mut o, tags::ECHO_TIME, &[p.te]);
            if let Some(ti) = p.ti {
                put_ds(&mut o, tags::INVERSION_TIME, &[ti]);
            }
        }
        if self.channel == Channel::T1ce {
            put_str(
                &mut o,
                tags::CONTRAST_BOLUS_AGENT,
                VR::LO,
                "GADOBUTROL 1 MMOL/ML",
            );
            put_str(&mut o, tags::CONTRAST_BOLUS_ROUTE, VR::LO, "IV");
            put_ds(&mut o, tags::CONTRAST_BOLUS_VOLUME, &[7.5]);
        }
        put_us(&mut o, tags::SAMPLES_PER_PIXEL, &[1]);
        put_us(&mut o, tags::ROWS, &[self.rows as u16]);
        put_us(&mut o, tags::COLUMNS, &[self.cols as u16]);
        put_us(&mut o, tags::BITS_ALLOCATED, &[16]);
        put_us(&mut o, tags::BITS_STORED, &[16]);
        put_us(&mut o, tags::HIGH_BIT, &[15]);
        put_us(&mut o, tags::PIXEL_REPRESENTATION, &[0]);
        put_ds(&mut o, tags::WINDOW_CENTER, &[self.vmax / 2.0]);
        put_ds(&mut o, tags::WINDOW_WIDTH, &[self.vmax]);
        o
    }

    /// One MR Image Storage instance.
    pub(super) fn classic(
        &self,
        number: i32,
        sop: &str,
        pos: Vec3,
        st: &Stack,
        px: &[u16],
    ) -> InMemDicomObject {
        let mut o = self.common(dcm::MR_IMAGE_STORAGE, sop);
        put_str(&mut o, tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\M\\ND");
        put_str(&mut o, tags::INSTANCE_NUMBER, VR::IS, &number.to_string());
        put_ds(&mut o, tags::SLICE_THICKNESS, &[self.spacing[0]]);
        put_ds(&mut o, tags::SPACING_BETWEEN_SLICES, &[self.spacing[0]]);
        put_ds(&mut o, tags::IMAGE_POSITION_PATIENT, &pos);
        put_ds(
            &mut o,
            tags::IMAGE_ORIENTATION_PATIENT,
            &[st.row, st.col].concat(),
        );
        let normal = cross(st.row, st.col);
        put_ds(
            &mut o,
            tags::SLICE_LOCATION,
            &[crate::ai::grid::dot(pos, normal)],
        );
        put_ds(
            &mut o,
            tags::PIXEL_SPACING,
            &[self.spacing[1], self.spacing[2]],
        );
        put_ds(&mut o, tags::RESCALE_INTERCEPT, &[self.intercept]);
        put_ds(&mut o, tags::RESCALE_SLOPE, &[self.slope]);
        put_str(&mut o, tags::RESCALE_TYPE, VR::LO, "US");
        o.put(dicom_core::DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            dicom_core::PrimitiveValue::U16(px.iter().copied().collect()),
        ));
        o
    }

    /// One Enhanced MR Image Storage instance holding every frame.
    pub(super) fn enhanced(
        &self,
        frames: &[(Vec3, Vec<u16>)],
        st: &Stack,
        uid: &dyn Fn(&str) -> String,
    ) -> InMemDicomObject {
        let p = self.proto;
        let sop = uid(&format!("sop-{}-enhanced", self.channel));
        let mut o = self.common(dcm::ENHANCED_MR_IMAGE_STORAGE, &sop);
        put_str(
            &mut o,
            tags::IMAGE_TYPE,
            VR::CS,
            "ORIGINAL\\PRIMARY\\M\\NONE",
        );
        put_str(&mut o, tags::INSTANCE_NUMBER, VR::IS, "1");
        put_str(
            &mut o,
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            &frames.len().to_string(),
        );
        let mut measures = InMemDicomObject::new_empty();
        put_ds(
            &mut measures,
            tags::PIXEL_SPACING,
            &[self.spacing[1], self.spacing[2]],
        );
        put_ds(&mut measures, tags::SLICE_THICKNESS, &[self.spacing[0]]);
        put_ds(
            &mut measures,
            tags::SPACING_BETWEEN_SLICES,
            &[self.spacing[0]],
        );
        let mut orient = InMemDicomObject::new_empty();
        put_ds(
            &mut orient,
            tags::IMAGE_ORIENTATION_PATIENT,
            &[st.row, st.col].concat(),
        );
        let mut pvt = InMemDicomObject::new_empty();
        put_ds(&mut pvt, tags::RESCALE_INTERCEPT, &[self.intercept]);
        put_ds(&mut pvt, tags::RESCALE_SLOPE, &[self.slope]);
        put_str(&mut pvt, tags::RESCALE_TYPE, VR::LO, "US");
        let mut timing = InMemDicomObject::new_empty();
        put_ds(&mut timing, tags::REPETITION_TIME, &[p.tr]);
        put_ds(&mut timing, tags::FLIP_ANGLE, &[p.flip]);
        let mut echo = InMemDicomObject::new_empty();
        put_ds(&mut echo, tags::EFFECTIVE_ECHO_TIME, &[p.te]);
        let mut shared = InMemDicomObject::new_empty();
        put_seq(&mut shared, tags::PIXEL_MEASURES_SEQUENCE, vec![measures]);
        put_seq(&mut shared, tags::PLANE_ORIENTATION_SEQUENCE, vec![orient]);
        put_seq(
            &mut shared,
            tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
            vec![pvt],
        );
        put_seq(
            &mut shared,
            tags::MR_TIMING_AND_RELATED_PARAMETERS_SEQUENCE,
            vec![timing],
        );
        put_seq(&mut shared, tags::MR_ECHO_SEQUENCE, vec![echo]);
        if let Some(ti) = p.ti {
            let mut m = InMemDicomObject::new_empty();
            put_ds(&mut m, tags::INVERSION_TIMES, &[ti]);
            put_seq(&mut shared, tags::MR_MODIFIER_SEQUENCE, vec![m]);
        }
        put_seq(
            &mut o,
            tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
            vec![shared],
        );
        let per_frame = frames
            .iter()
            .enumerate()
            .map(|(i, (pos, _))| {
                let mut pp = InMemDicomObject::new_empty();
                put_ds(&mut pp, tags::IMAGE_POSITION_PATIENT, pos);
                let mut fc = InMemDicomObject::new_empty();
                dcm::put_ul(&mut fc, tags::DIMENSION_INDEX_VALUES, &[i as u32 + 1]);
                let mut it = InMemDicomObject::new_empty();
                put_seq(&mut it, tags::PLANE_POSITION_SEQUENCE, vec![pp]);
                put_seq(&mut it, tags::FRAME_CONTENT_SEQUENCE, vec![fc]);
                it
            })
            .collect();
        put_seq(
            &mut o,
            tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
            per_frame,
        );
        let all: Vec<u16> = frames
            .iter()
            .flat_map(|(_, px)| px.iter().copied())
            .collect();
        o.put(dicom_core::DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            dicom_core::PrimitiveValue::U16(all.into()),
        ));
        o
    }
}
